/**
 * Zero-shot LM reranking (Ram et al., 2023, §6.1): of the retriever's top candidates, keep the one
 * under which the model best predicts the last `tokens` tokens of the prefix, i.e. the argmax of
 * log p(y' | [passage; prefix without y']). The true continuation is unknown when generating, so
 * the recent past stands in for it. All candidates are scored at once (they share forward passes).
 */
import type { Passage } from '../retrieval/types';
import { scoreTokens } from '../score';
import { PassageLayout, PassageStates } from './passages';
import type { RalmModel, RankedPassage } from './types';

export interface RerankLayout extends PassageLayout {
  tokens: number;
}

/** Candidates with their scores, best first (ties keep the retriever's order). */
export async function rerankPassages(model: RalmModel, states: PassageStates, candidates: Passage[], prefix: number[],
                                     layout: RerankLayout, signal?: AbortSignal): Promise<RankedPassage[]> {
  // Without a prefix there is nothing to predict: the retriever's order stands.
  if (prefix.length === 0 || candidates.length < 2) return candidates.map((passage) => ({ passage, score: 0 }));
  const target = prefix.slice(-layout.tokens);
  const before = prefix.slice(0, prefix.length - target.length);
  const scored = await Promise.all(candidates.map(async (passage) => {
    const head = await states.head(passage, true);
    const room = Math.max(0, layout.maxContextTokens - head.length - target.length);
    const { seq } = await states.open(head, [], signal);
    const r = await scoreTokens(seq, before.slice(Math.max(0, before.length - room)), target, undefined, model.config.vocabSize, signal);
    return { passage, score: r.sum };
  }));
  return scored.map((s, i) => ({ ...s, i })).sort((a, b) => b.score - a.score || a.i - b.i).map(({ passage, score }) => ({ passage, score }));
}

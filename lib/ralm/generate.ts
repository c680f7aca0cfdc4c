/**
 * In-Context RALM generation: before the first token and then every `stride` tokens, the last
 * `queryTokens` tokens of the prefix (prompt plus what was generated) are decoded into a query;
 * the best passage (after reranking, if asked) goes in front of the prefix, the prefix losing
 * tokens from its start if passage and prefix exceed the context; generation continues from that
 * state. When the passage in front does not change, nothing needs recomputing and the state just
 * carries on, which is exactly what re-evaluating the same window would give.
 */
import { InvalidArgumentError } from '../errors';
import { EngineContext, GenerationResult, LogitsSource, ResolvedGenerate, decodeLoop, feed } from '../generation';
import { retrieveAllowed } from '../retrieval/exclude';
import type { Passage } from '../retrieval/types';
import type { Sequence } from '../sequence';
import { PassageStates } from './passages';
import { rerankPassages } from './rerank';
import type { RalmModel, RankedPassage, ResolvedRetrieval, Retrieval } from './types';

/** Picks the passage for a prefix: the retriever's best allowed one, or the reranker's. */
export async function choosePassage(model: RalmModel, states: PassageStates, r: ResolvedRetrieval, prefix: number[], signal?: AbortSignal):
    Promise<{ query: string; passage: Passage | null; candidates?: RankedPassage[]; excluded: number }> {
  const query = model.tokenizer.decode(prefix.slice(-r.queryTokens));
  const { passages: found, excluded } = await retrieveAllowed(r.retriever, query, r.rerank ? r.rerank.k : 1, r.exclusion, signal);
  if (!r.rerank || found.length === 0) return { query, passage: found[0] ?? null, excluded };
  const layout = { tokens: r.rerank.tokens, maxPassageTokens: r.maxPassageTokens, separator: r.separator, maxContextTokens: r.maxContextTokens };
  let ranked: RankedPassage[];
  if (!r.rerank.model || r.rerank.model === model) {
    ranked = await rerankPassages(model, states, found, prefix, layout, signal);
  } else {
    // Another model, maybe another vocabulary: it sees the prefix as text.
    const other = r.rerank.model;
    const ids = await other.tokenizer.encode(model.tokenizer.decode(prefix), { addSpecialTokens: false });
    const otherLayout = { ...layout, maxContextTokens: Math.min(layout.maxContextTokens, other.config.maxPositionEmbeddings) };
    ranked = await rerankPassages(other, new PassageStates(other, otherLayout), found, ids, otherLayout, signal);
  }
  return { query, passage: ranked[0]!.passage, candidates: ranked, excluded };
}

const passageKey = (p: Passage | null) => (p ? `${p.id}\u0000${PassageStates.text(p)}` : '');

export async function* generateWithRetrieval(model: RalmModel, ctx: EngineContext, prompt: number[], opts: ResolvedGenerate,
                                              r: ResolvedRetrieval, signal?: AbortSignal): AsyncGenerator<string, GenerationResult, void> {
  const states = new PassageStates(model, r);
  const withBos = states.bos !== null && prompt[0] === states.bos;
  const prefix = withBos ? prompt.slice(1) : prompt.slice();
  const retrievals: Retrieval[] = [];
  let seq: Sequence | null = null;
  let current = '';
  let sinceRetrieval = 0;
  let generated = 0;

  /** Retrieves for the prefix as it is and returns the logits for the next token; `pending` is not yet evaluated. */
  const refresh = async (pending: number[], sig?: AbortSignal): Promise<Float32Array> => {
    const choice = await choosePassage(model, states, r, prefix, sig);
    const key = passageKey(choice.passage);
    const record: Retrieval = { atToken: generated, query: choice.query, passage: choice.passage, kept: false, cachedState: false, excluded: choice.excluded };
    if (choice.candidates) record.candidates = choice.candidates;
    retrievals.push(record);
    sinceRetrieval = 0;
    if (seq && key === current && seq.position + pending.length <= r.maxContextTokens) {
      record.kept = true;
      return (await feed(seq, new Float32Array(0), Int32Array.from(pending), 'last', false, sig)).logits;
    }
    if (seq) {
      states.keep(seq);
      seq.dispose();
      seq = null;
    }
    const head = await states.head(choice.passage, withBos);
    const body = prefix.slice(Math.max(0, prefix.length - (r.maxContextTokens - head.length)));
    if (head.length + body.length === 0) throw new InvalidArgumentError('nothing to condition on: the prompt is empty and no passage was found');
    const opened = await states.open(head, body, sig);
    seq = opened.seq;
    record.cachedState = opened.cached;
    current = key;
    return opened.logits;
  };

  const source: LogitsSource = {
    start: (sig) => refresh([], sig),
    next: async (id, sig) => {
      prefix.push(id);
      generated++;
      if (++sinceRetrieval >= r.stride || seq!.position + 1 > r.maxContextTokens) return refresh([id], sig);
      return seq!.evaluate([id], { logits: 'last', signal: sig });
    },
  };
  try {
    const result = yield* decodeLoop(ctx, prompt, opts, source, signal);
    result.retrievals = retrievals;
    return result;
  } finally {
    (seq as Sequence | null)?.dispose();
  }
}

/**
 * Options and reports of In-Context RALM (Ram et al., 2023), and what RALM needs of a model.
 * RALM is built on the model's public surface (`RalmModel`, which a JambaModel is): nothing in
 * lib/ralm imports the model, which imports RALM for its `retrieval` option.
 */
import type { JambaConfig } from '../config';
import type { PrefixCache } from '../prefix-cache';
import type { Exclusion, ExcludeOptions } from '../retrieval/exclude';
import type { Passage, Retriever } from '../retrieval/types';
import type { Sequence } from '../sequence';
import type { JambaTokenizer } from '../tokenizer';

/** The model as RALM uses it: its tokenizer, sizes, sequences and passage-state cache. */
export interface RalmModel {
  readonly config: Pick<JambaConfig, 'vocabSize' | 'maxPositionEmbeddings' | 'bosTokenId'>;
  readonly tokenizer: JambaTokenizer;
  /** Snapshots of states after `[BOS] passage separator`, by their tokens (null: no cache). @internal */
  readonly passageCache: PrefixCache | null;
  createSequence(): Sequence;
}

export interface RerankOptions {
  /** Candidates asked of the retriever and reranked (default 16, the paper's). */
  k?: number;
  /** Prefix tokens each candidate must predict (default 16: the paper's s'). */
  tokens?: number;
  /**
   * The model that scores candidates (default: the generating model). A smaller one works nearly
   * as well (the paper's Table 3); its tokenizer may differ, since text is re-encoded for it.
   */
  model?: RalmModel;
}

export interface RetrievalOptions {
  retriever: Retriever;
  /** Generated tokens between retrievals (default 4). */
  stride?: number;
  /** Tokens at the end of the prefix, decoded, that form the query (default 32). */
  queryTokens?: number;
  /** A passage is cut to this many tokens (default 256). */
  maxPassageTokens?: number;
  /** Zero-shot LM reranking of the retriever's top candidates (`true`: the defaults). */
  rerank?: boolean | RerankOptions;
  /** Text put between the passage and the prefix (default '\n'). */
  separator?: string;
  /** Passage plus prefix never exceed this many tokens; the prefix loses tokens from its start (default: max_position_embeddings). */
  maxContextTokens?: number;
  /** Passages never put in front: by title, by id, or by a run of words shared with a text (contamination filtering). */
  exclude?: ExcludeOptions;
}

/** One retrieval during a generation. */
export interface Retrieval {
  /** Generated tokens before this retrieval (0: before the first token). */
  atToken: number;
  query: string;
  /** The passage put in front (null when the retriever found none). */
  passage: Passage | null;
  /** With reranking: the candidates with their scores (log-probability of the prefix's last tokens), best first. */
  candidates?: RankedPassage[];
  /** The passage was already in front, so the state carried on without recomputing the prefix. */
  kept: boolean;
  /** The passage's state came from the passage cache instead of being evaluated. */
  cachedState: boolean;
  /** Passages the retriever ranked above the one used (or above the reranked candidates) that `exclude` passed over. */
  excluded: number;
}

export interface RankedPassage {
  passage: Passage;
  /** Σ log p(target tokens | [passage; prefix]). */
  score: number;
}

export interface ResolvedRetrieval {
  retriever: Retriever;
  stride: number;
  queryTokens: number;
  maxPassageTokens: number;
  rerank: { k: number; tokens: number; model: RalmModel | undefined } | null;
  separator: string;
  maxContextTokens: number;
  exclusion: Exclusion | null;
}

/**
 * Teacher-forced scoring: the log-probability of each token given everything before it, in
 * float64. The basis of perplexity, of zero-shot passage reranking and of RALM evaluation.
 */
import type { Sequence } from './sequence';
import { feed } from './generation';
import { logSumExp } from './sampling';

export interface ScoreOptions {
  /** Evaluated before the input but not scored (text is encoded without special tokens). */
  context?: string | ArrayLike<number>;
  /** A soft prompt: n × hiddenSize floats fed first, in place of token embeddings. */
  inputsEmbeds?: Float32Array;
  signal?: AbortSignal;
}

export interface ScoreResult {
  /** The scored tokens (the input's ids). */
  tokens: number[];
  /**
   * `logprobs[j]` is log p(tokens[offset + j] | everything before it). `offset` is 1 when nothing
   * precedes the first token (no context, no soft prompt), since it has no prediction, else 0.
   */
  logprobs: number[];
  offset: number;
  /** Σ logprobs. */
  sum: number;
}

/** log softmax(row)[target] in float64. */
export function tokenLogprob(row: Float32Array, target: number): number {
  return row[target]! - logSumExp(row);
}

/**
 * Scores `ids` after `context` (and a soft prompt) on `seq`, which must be fresh or hold exactly
 * the state to score after; the sequence is disposed at the end.
 */
export async function scoreTokens(seq: Sequence, context: ArrayLike<number>, ids: number[], embeds: Float32Array | undefined,
                                  vocab: number, signal?: AbortSignal): Promise<ScoreResult> {
  try {
    const logprobs: number[] = [];
    let offset = 1;
    if (context.length > 0 || embeds !== undefined) {
      const last = (await feed(seq, embeds ?? new Float32Array(0), Int32Array.from(context), 'last', false, signal)).logits;
      if (ids.length > 0) logprobs.push(tokenLogprob(last, ids[0]!));
      offset = 0;
    } else if (seq.position > 0 && ids.length > 0) {
      logprobs.push(tokenLogprob(seq.lastLogits, ids[0]!));
      offset = 0;
    }
    if (ids.length > 1) {
      // Row j predicts token j + 1; the last token's row predicts nothing, so it is not evaluated for logits.
      const rows = (await feed(seq, new Float32Array(0), Int32Array.from(ids.slice(0, -1)), 'all', false, signal)).logits;
      for (let j = 1; j < ids.length; j++) logprobs.push(tokenLogprob(rows.subarray((j - 1) * vocab, j * vocab), ids[j]!));
    }
    return { tokens: ids, logprobs, offset, sum: logprobs.reduce((a, b) => a + b, 0) };
  } finally {
    seq.dispose();
  }
}

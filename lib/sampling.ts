/**
 * Token selection from one row of logits: repetition penalty, temperature, top-k, top-p, min-p and
 * a seeded generator (the same seed gives the same tokens). `temperature: 0` is greedy argmax.
 */
import { InvalidArgumentError } from './errors';

export interface SamplingOptions {
  /** 0 selects the most likely token (ties: the lowest id). Default 0.8. */
  temperature?: number;
  /** Keep only the k most likely tokens (0: off). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability adds up to at least p (1: off). */
  topP?: number;
  /** Drop tokens less likely than minP × the most likely one (0: off). */
  minP?: number;
  /** Divide positive logits and multiply negative ones of tokens already in the context (1: off). */
  repetitionPenalty?: number;
  /** How many of the last context tokens the penalty looks at (default: all). */
  repetitionLastN?: number;
  /** Subtracted from the logit of every token already generated (OpenAI's presence_penalty, in [-2, 2]; 0: off). */
  presencePenalty?: number;
  /** Subtracted from a token's logit once per time it was generated (OpenAI's frequency_penalty, in [-2, 2]; 0: off). */
  frequencyPenalty?: number;
  /** Added to the logits of these token ids before sampling (OpenAI's logit_bias, each in [-100, 100]). */
  logitBias?: Record<number, number>;
  /** Seed of the sampler; without it every run differs. */
  seed?: number;
}

export interface ResolvedSampling {
  temperature: number; topK: number; topP: number; minP: number; repetitionPenalty: number;
  repetitionLastN: number; presencePenalty: number; frequencyPenalty: number;
  /** [id, bias] pairs (empty: none). */
  logitBias: Array<[number, number]>;
  seed: number;
}

/** Does sampling need anything but the logits (so it cannot run on the device)? */
export const needsHost = (s: ResolvedSampling) =>
  s.repetitionPenalty !== 1 || s.presencePenalty !== 0 || s.frequencyPenalty !== 0 || s.logitBias.length > 0;

/** `logitBias` checked: [token id, bias] pairs (the server maps its errors to `logit_bias`). */
export function resolveBias(v: unknown, vocab: number): Array<[number, number]> {
  if (v === undefined || v === null) return [];
  if (typeof v !== 'object' || Array.isArray(v)) throw new InvalidArgumentError('logitBias must be an object of token id → bias');
  return Object.entries(v as Record<string, unknown>).map(([k, b]) => {
    const id = Number(k);
    if (!Number.isInteger(id) || id < 0 || id >= vocab || String(id) !== k) throw new InvalidArgumentError(`logitBias: ${JSON.stringify(k)} is not a token id below ${vocab}`);
    if (typeof b !== 'number' || !Number.isFinite(b) || b < -100 || b > 100) throw new InvalidArgumentError(`logitBias[${k}] must be a number in [-100, 100], got ${String(b)}`);
    return [id, b];
  });
}

function check(name: string, v: unknown, ok: (n: number) => boolean, range: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new InvalidArgumentError(`${name} must be ${range}, got ${String(v)}`);
  return v;
}

export function resolveSampling(o: SamplingOptions, vocab: number): ResolvedSampling {
  return {
    temperature: check('temperature', o.temperature ?? 0.8, (n) => n >= 0 && n <= 100, 'a number in [0, 100]'),
    topK: check('topK', o.topK ?? 0, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'),
    topP: check('topP', o.topP ?? 1, (n) => n > 0 && n <= 1, 'in (0, 1]'),
    minP: check('minP', o.minP ?? 0, (n) => n >= 0 && n <= 1, 'in [0, 1]'),
    repetitionPenalty: check('repetitionPenalty', o.repetitionPenalty ?? 1, (n) => n > 0 && n <= 100, 'in (0, 100]'),
    repetitionLastN: check('repetitionLastN', o.repetitionLastN ?? Number.MAX_SAFE_INTEGER, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'),
    presencePenalty: check('presencePenalty', o.presencePenalty ?? 0, (n) => n >= -2 && n <= 2, 'in [-2, 2]'),
    frequencyPenalty: check('frequencyPenalty', o.frequencyPenalty ?? 0, (n) => n >= -2 && n <= 2, 'in [-2, 2]'),
    logitBias: resolveBias(o.logitBias, vocab),
    seed: o.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : check('seed', o.seed, (n) => Number.isInteger(n), 'an integer') >>> 0,
  };
}

/** xoshiro128** seeded by splitmix32: small, fast and the same on every platform. */
export class Rng {
  private s = new Uint32Array(4);
  constructor(seed: number) {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  /** Uniform in [0, 1). */
  next(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!; s[3]! ^= s[1]!; s[1]! ^= s[2]!; s[0]! ^= s[3]!; s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return r / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** log Σ exp(row), in float64 and shifted by the maximum: the normaliser of log-softmax. */
export function logSumExp(row: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let z = 0;
  for (let i = 0; i < row.length; i++) z += Math.exp(row[i]! - max);
  return Math.log(z) + max;
}

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/**
 * Picks the next token. `context` is every token so far (prompt and generated) for the
 * repetition penalty; the tokens from `generatedFrom` on are the generated ones, which the
 * presence and frequency penalties count (as OpenAI and vLLM define them). Order: logit bias,
 * presence and frequency penalties, repetition penalty, then as in transformers temperature,
 * top-k, top-p, min-p. Only the candidates that can matter are sorted, so a 65,536-token
 * vocabulary costs O(V), not O(V log V).
 */
export function sampleToken(logits: Float32Array, s: ResolvedSampling, rng: Rng, context: ArrayLike<number>, generatedFrom = context.length): number {
  let row = logits;
  if (needsHost(s)) row = Float32Array.from(logits);
  for (const [id, b] of s.logitBias) if (id < row.length) row[id]! += b;
  if (s.presencePenalty !== 0 || s.frequencyPenalty !== 0) {
    const counts = new Map<number, number>();
    for (let i = generatedFrom; i < context.length; i++) counts.set(context[i]!, (counts.get(context[i]!) ?? 0) + 1);
    for (const [id, c] of counts) if (id >= 0 && id < row.length) row[id]! -= s.presencePenalty + c * s.frequencyPenalty;
  }
  if (s.repetitionPenalty !== 1) {
    const seen = new Set<number>();
    for (let i = Math.max(0, context.length - s.repetitionLastN); i < context.length; i++) seen.add(context[i]!);
    for (const id of seen) {
      if (id < 0 || id >= row.length) continue;
      const v = row[id]!;
      row[id] = v > 0 ? v / s.repetitionPenalty : v * s.repetitionPenalty;
    }
  }
  if (s.temperature === 0) return argmax(row);

  const V = row.length;
  // top-k: the k-th largest logit is the cut; ties at the cut are settled by lower id below.
  let cut = -Infinity;
  if (s.topK > 0 && s.topK < V) cut = Float32Array.from(row).sort()[V - s.topK]!;
  const max = row[argmax(row)]!;
  let ids: number[] = [];
  let weights: number[] = [];
  for (let i = 0; i < V; i++) {
    if (row[i]! < cut) continue;
    ids.push(i);
    weights.push(Math.exp((row[i]! - max) / s.temperature));  // the best token has weight 1
  }
  if (ids.length > s.topK && s.topK > 0) {
    const order = sortedOrder(ids, weights).slice(0, s.topK);
    ids = order.map((j) => ids[j]!);
    weights = order.map((j) => weights[j]!);
  }
  if (s.topP < 1) {
    const total = weights.reduce((a, b) => a + b, 0);
    const need = s.topP * total;
    // The nucleus lies within the tokens of weight ≥ τ once those reach the mass `need`: lower τ
    // geometrically until they do, then sort only them.
    let tau = 1;
    for (;;) {
      let mass = 0;
      for (const w of weights) if (w >= tau) mass += w;
      if (mass >= need || tau === 0) break;
      tau = tau < 1e-30 ? 0 : tau / 16;
    }
    const keep = weights.map((w, j) => (w >= tau ? j : -1)).filter((j) => j >= 0);
    const order = sortedOrder(keep.map((j) => ids[j]!), keep.map((j) => weights[j]!)).map((j) => keep[j]!);
    let cum = 0, n = 0;
    while (n < order.length) {
      cum += weights[order[n]!]!;
      n++;
      if (cum >= need) break;
    }
    ids = order.slice(0, n).map((j) => ids[j]!);
    weights = order.slice(0, n).map((j) => weights[j]!);
  }
  if (s.minP > 0) {
    const keep = weights.map((w, j) => (w >= s.minP ? j : -1)).filter((j) => j >= 0);
    ids = keep.map((j) => ids[j]!);
    weights = keep.map((j) => weights[j]!);
  }
  const total = weights.reduce((a, b) => a + b, 0);
  let r = rng.next() * total;
  for (let j = 0; j < ids.length; j++) {
    r -= weights[j]!;
    if (r < 0) return ids[j]!;
  }
  return ids[ids.length - 1]!;
}

/** Positions of `weights` from largest to smallest, ties by lower id. */
function sortedOrder(ids: number[], weights: number[]): number[] {
  return weights.map((_, j) => j).sort((a, b) => weights[b]! - weights[a]! || ids[a]! - ids[b]!);
}

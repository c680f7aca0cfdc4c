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
  /** Seed of the sampler; without it every run differs. */
  seed?: number;
}

export interface ResolvedSampling {
  temperature: number; topK: number; topP: number; minP: number; repetitionPenalty: number;
  repetitionLastN: number; seed: number;
}

function check(name: string, v: unknown, ok: (n: number) => boolean, range: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new InvalidArgumentError(`${name} must be ${range}, got ${String(v)}`);
  return v;
}

export function resolveSampling(o: SamplingOptions): ResolvedSampling {
  return {
    temperature: check('temperature', o.temperature ?? 0.8, (n) => n >= 0 && n <= 100, 'a number in [0, 100]'),
    topK: check('topK', o.topK ?? 0, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'),
    topP: check('topP', o.topP ?? 1, (n) => n > 0 && n <= 1, 'in (0, 1]'),
    minP: check('minP', o.minP ?? 0, (n) => n >= 0 && n <= 1, 'in [0, 1]'),
    repetitionPenalty: check('repetitionPenalty', o.repetitionPenalty ?? 1, (n) => n > 0 && n <= 100, 'in (0, 100]'),
    repetitionLastN: check('repetitionLastN', o.repetitionLastN ?? Number.MAX_SAFE_INTEGER, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'),
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

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** Picks the next token. `context` is every token so far (prompt and generated) for the penalty. */
export function sampleToken(logits: Float32Array, s: ResolvedSampling, rng: Rng, context: ArrayLike<number>): number {
  let row = logits;
  if (s.repetitionPenalty !== 1) {
    row = Float32Array.from(logits);
    const seen = new Set<number>();
    for (let i = Math.max(0, context.length - s.repetitionLastN); i < context.length; i++) seen.add(context[i]!);
    for (const id of seen) {
      if (id < 0 || id >= row.length) continue;
      const v = row[id]!;
      row[id] = v > 0 ? v / s.repetitionPenalty : v * s.repetitionPenalty;
    }
  }
  if (s.temperature === 0) return argmax(row);

  // Candidates sorted by logit (ties by id), then narrowed by top-k, softmax at temperature,
  // min-p and top-p, and sampled.
  let ids = Array.from({ length: row.length }, (_, i) => i);
  ids.sort((a, b) => row[b]! - row[a]! || a - b);
  if (s.topK > 0 && s.topK < ids.length) ids = ids.slice(0, s.topK);
  const max = row[ids[0]!]!;
  let probs = ids.map((id) => Math.exp((row[id]! - max) / s.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / total);
  let keep = probs.length;
  if (s.minP > 0) {
    const floor = s.minP * probs[0]!;
    keep = Math.max(1, probs.findIndex((p) => p < floor) === -1 ? keep : probs.findIndex((p) => p < floor));
  }
  if (s.topP < 1) {
    let cum = 0;
    for (let i = 0; i < keep; i++) {
      cum += probs[i]!;
      if (cum >= s.topP) { keep = i + 1; break; }
    }
  }
  probs = probs.slice(0, keep);
  total = probs.reduce((a, b) => a + b, 0);
  let r = rng.next() * total;
  for (let i = 0; i < keep; i++) {
    r -= probs[i]!;
    if (r < 0) return ids[i]!;
  }
  return ids[keep - 1]!;
}

/**
 * The examples the backward's tests build, for the engine and for the float64 reference alike:
 * `[BOS][soft prompt][tokens]`, optionally from the state after a random prefix.
 */
import type { JambaModel, Snapshot } from '../../lib';
import type { RefLayerState } from './reference-model';

export const BOS = 1;

export interface GradInputs {
  soft: Float32Array;
  ids: number[];
  snap?: Snapshot;
}

/** `soft` random prompt rows, `tokens` random ids, and with `prefix` > 0 the state after BOS and prefix − 1 random tokens. */
export async function gradInputs(model: JambaModel, c: { soft: number; tokens: number; prefix: number }, r: () => number): Promise<GradInputs> {
  const H = model.config.hiddenSize, V = model.config.vocabSize;
  const soft = Float32Array.from({ length: c.soft * H }, () => (r() - 0.5) * 0.1);
  const ids = Array.from({ length: c.tokens }, () => 3 + Math.floor(r() * (V - 3)));
  if (c.prefix <= 0) return { soft, ids };
  const seq = model.createSequence();
  await seq.evaluate([BOS, ...Array.from({ length: c.prefix - 1 }, () => 3 + Math.floor(r() * (V - 3)))], { logits: 'none' });
  const snap = seq.snapshot();
  seq.dispose();
  return { soft, ids, snap };
}

const f64 = (a: ArrayLike<number>) => Float64Array.from(a as ArrayLike<number>);

/** The example's rows as the reference takes them (embedding rows of `emb`, the soft prompt as given), and the snapshot as its initial state. */
export function referenceInputs(emb: Float64Array, H: number, x: GradInputs): { rows: Float64Array; count: number; initial?: RefLayerState[] } {
  const soft = x.soft.length / H;
  const rowIds = [BOS, ...Array.from({ length: soft }, () => -1), ...x.ids];
  const rows = new Float64Array(rowIds.length * H);
  let s = 0;
  rowIds.forEach((id, t) => rows.set(id >= 0 ? emb.subarray(id * H, (id + 1) * H) : f64(x.soft.subarray((s++) * H, s * H)), t * H));
  const initial = x.snap?.state.layers.map((l) => ({ conv: f64(l.conv), ssm: f64(l.ssm), k: f64(l.k), v: f64(l.v) }));
  return { rows, count: rowIds.length, initial };
}

/** The engine's routing (a tape's `routing` output, first example) as the reference's `routing` option. */
export function routingOf(routing: Array<Int32Array[] | null>, k: number): Map<number, number[][]> {
  const out = new Map<number, number[][]>();
  routing.forEach((layer, li) => {
    if (!layer) return;
    const idx = layer[0]!;
    out.set(li, Array.from({ length: idx.length / k }, (_, t) => Array.from(idx.subarray(t * k, (t + 1) * k))));
  });
  return out;
}

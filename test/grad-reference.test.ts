/**
 * The float64 reference backward (helpers/reference-backward.ts) against central finite
 * differences of the float64 reference forward, on the fixtures and on random configurations:
 * gradients with respect to the input rows and to the initial conv, SSM and K/V states, along
 * unit directions and coordinate by coordinate, to 1e-6 relative. Routing is held at the base
 * pass's choice while differencing, so a step never crosses a top-k tie (the margins are logged).
 */
import { JambaConfig } from '../lib/config';
import { EMBEDDED, TINY_RANDOM } from './helpers/paths';
import { BASE, CASES } from './helpers/random-configs';
import { writeRandomCheckpoint } from './helpers/random-checkpoint';
import { RefGradOptions, referenceGrad, referenceLoss, routerMargin } from './helpers/reference-backward';
import { RefLayerState, Weights, loadWeights, referenceForwardRows } from './helpers/reference-model';
import { rng } from './helpers/rng';

const EPS = 1e-5;

/** Random rows, initial states and targets for a model: T rows of which the first `soft` are free vectors. */
function problem(cfg: JambaConfig, w: Weights, T: number, seed: number, withState: boolean) {
  const r = rng(seed);
  const H = cfg.hiddenSize, emb = w.get('model.embed_tokens.weight')!;
  const rows = new Float64Array(T * H);
  const ids = Array.from({ length: T + 1 }, () => Math.floor(r() * cfg.vocabSize));
  for (let t = 0; t < T; t++) {
    if (t < 3) for (let c = 0; c < H; c++) rows[t * H + c] = (r() - 0.5) * 0.1;  // a soft prompt
    else rows.set(emb.subarray(ids[t]! * H, (ids[t]! + 1) * H), t * H);
  }
  const initial: RefLayerState[] = cfg.layerTypes.map((kind) => {
    if (!withState) return {};
    const rand = (n: number, s: number) => Float64Array.from({ length: n }, () => (r() - 0.5) * s);
    if (kind === 'mamba') return { conv: rand(cfg.mambaDInner * (cfg.mambaDConv - 1), 1), ssm: rand(cfg.mambaDInner * cfg.mambaDState, 0.5) };
    const kvw = cfg.numKeyValueHeads * cfg.headDim;
    return { k: rand(5 * kvw, 1), v: rand(5 * kvw, 1) };
  });
  const targets = { rows: Array.from({ length: T - 3 }, (_, i) => i + 3), ids: ids.slice(4, T + 1), weights: Array.from({ length: T - 3 }, () => 0.5 + r()) };
  return { rows, initial, targets, r };
}

/** Central difference of `f` along `dir` at step EPS. */
const central = (f: (s: number) => number) => (f(EPS) - f(-EPS)) / (2 * EPS);

function unit(n: number, r: () => number): Float64Array {
  const d = Float64Array.from({ length: n }, () => r() - 0.5);
  const norm = Math.hypot(...d);
  return d.map((v) => v / norm);
}
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};

function check(name: string, cfg: JambaConfig, w: Weights, T: number, seed: number, coords = 6) {
  const { rows, initial, targets, r } = problem(cfg, w, T, seed, true);
  const base = referenceGrad(cfg, w, rows, { initial, targets });
  // Routing held as the base pass chose it, so differences stay on one smooth piece.
  const routing = new Map<number, number[][]>();
  base.tape.forEach((lt, i) => lt.ff.kind === 'moe' && routing.set(i, lt.ff.chosen));
  const margin = routerMargin(base.tape, cfg.numExperts, cfg.numExpertsPerTok);
  const opts: RefGradOptions = { initial, targets, routing };
  const errors: Array<[string, number]> = [];
  const relErr = (fd: number, an: number) => Math.abs(fd - an) / Math.max(Math.abs(fd), Math.abs(an), 1e-12);

  // The loss equals the one computed from referenceForwardRows' logits.
  const logits = referenceForwardRows(cfg, w, rows, { initial }).logits;
  let direct = 0;
  const V = cfg.vocabSize, wsum = targets.weights.reduce((a, b) => a + b, 0);
  targets.rows.forEach((row, i) => {
    const z = Array.from(logits.subarray(row * V, (row + 1) * V));
    const m = Math.max(...z);
    direct += (targets.weights[i]! * (m + Math.log(z.reduce((a, v) => a + Math.exp(v - m), 0)) - z[targets.ids[i]!]!)) / wsum;
  });
  expect(Math.abs(base.loss - direct)).toBeLessThan(1e-12);

  // Input rows: three unit directions, and the largest coordinates.
  for (let k = 0; k < Math.min(3, coords); k++) {
    const d = unit(rows.length, r);
    const fd = central((s) => referenceLoss(cfg, w, rows.map((v, i) => v + s * d[i]!), opts));
    errors.push([`rows dir ${k}`, relErr(fd, dot(base.dRows, d))]);
  }
  const gmax = Math.max(...base.dRows.map(Math.abs));
  const big = Array.from(base.dRows.keys()).filter((i) => Math.abs(base.dRows[i]!) >= 1e-3 * gmax).sort(() => r() - 0.5).slice(0, coords);
  for (const i of big) {
    const fd = central((s) => referenceLoss(cfg, w, rows.map((v, j) => (j === i ? v + s : v)), opts));
    errors.push([`rows[${i}]`, relErr(fd, base.dRows[i]!)]);
  }
  // Initial states: a unit direction in each kind that the model has.
  for (const key of ['conv', 'ssm', 'k', 'v'] as const) {
    const layers = initial.map((s, i) => [s, i] as const).filter(([s]) => s[key]);
    if (!layers.length) continue;
    const dirs = layers.map(([s]) => unit(s[key]!.length, r));
    const moved = (s: number) => initial.map((st, i) => {
      const j = layers.findIndex(([, li]) => li === i);
      return j < 0 ? st : { ...st, [key]: st[key]!.map((v, c) => v + s * dirs[j]![c]!) };
    });
    const fd = central((s) => referenceLoss(cfg, w, rows, { ...opts, initial: moved(s) }));
    const an = layers.reduce((a, [, i], j) => a + dot(base.dInitial[i]![key]!, dirs[j]!), 0);
    errors.push([`initial ${key}`, relErr(fd, an)]);
  }
  // A cotangent on the final hidden states (the connector's and generator's entry point).
  const dHidden = Float64Array.from({ length: rows.length }, () => r() - 0.5);
  const withHidden = referenceGrad(cfg, w, rows, { ...opts, dHidden });
  const d = unit(rows.length, r);
  const fd = central((s) => referenceLoss(cfg, w, rows.map((v, i) => v + s * d[i]!), { ...opts, dHidden }));
  errors.push(['rows with a hidden cotangent', relErr(fd, dot(withHidden.dRows, d))]);

  const worst = errors.reduce((a, b) => (b[1] > a[1] ? b : a));
  console.log(`${name}: T ${T}, worst ${worst[0]} ${worst[1].toExponential(2)} over ${errors.length} checks; router margin ${margin.toExponential(2)}`);
  for (const [what, e] of errors) expect([name, what, e < 1e-6]).toEqual([name, what, true]);
}

test('on the tiny random fixture (attention at 2 and 6, MoE top-2 of 4) and the embedded model', () => {
  const rand = loadWeights(TINY_RANDOM);
  check('jamba-tiny-random', rand.cfg, rand.w, 12, 1);
  const emb = loadWeights(EMBEDDED);
  check('jamba-tiny-shakespeare', emb.cfg, emb.w, 8, 2, 2);
});

test('on random configurations: GQA/MQA, top-1/2/3, tied heads, other widths and schedules', () => {
  for (const [i, [label, config, dtype, shards]] of CASES.entries()) {
    const { cfg, w } = loadWeights(writeRandomCheckpoint({ ...BASE, ...config }, { dtype, shards, seed: 100 + i }));
    check(label, cfg, w, 9, 10 + i);
  }
});

/**
 * `npm run bench:train [-- --json] [-- --demos]`: training through the frozen embedded model. The
 * cost per token of a training step (the forward, the recompute and the backward together) as a
 * ratio to the inference forward over the same rows, in the same run (target ≤ 3×), with layer
 * checkpointing and with every activation kept; and with --demos, the wall time of each
 * demonstration of docs/training.md at its full step count (prompt tuning ≤ 90 s, neural recursion
 * ≤ 120 s on 2 cores).
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { GradExample, loadModel } from '../lib';

const args = new Set(process.argv.slice(2));
const now = () => performance.now();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const model = await loadModel();
  const H = model.config.hiddenSize;
  const rows: Array<{ case: string; value: string; ratio?: string; target?: string }> = [];
  // The prompt-tuning step's shape: 4 examples of [BOS][8 prompt rows][96 tokens].
  const examples: GradExample[] = [0, 1, 2, 3].map((i) => ({
    segments: [{ ids: [1] }, { embeds: new Float32Array(8 * H).fill(0.01) }, { ids: Array.from({ length: 96 }, (_, j) => 3 + ((i * 97 + j * 13) % 1000)) }],
    targets: 'next',
  }));
  const T = examples.length * 105;
  // The inference forward over the same rows: [E(BOS); P] as vectors, then the tokens.
  const bos = await model.embeddings([1]);
  const forward = () => Promise.all(examples.map((e) => {
    const s = e.segments as [{ ids: number[] }, { embeds: Float32Array }, { ids: number[] }];
    const embeds = new Float32Array(bos.length + s[1].embeds.length);
    embeds.set(bos);
    embeds.set(s[1].embeds, bos.length);
    return model.logits(s[2].ids, { inputsEmbeds: embeds });
  }));
  const reps = args.has('--quick') ? 3 : 7;
  for (const checkpointing of ['layer', 'none'] as const) {
    const f: number[] = [], tr: number[] = [];
    for (let r = 0; r < reps; r++) {
      // Interleaved, so the machine's drift hits both alike.
      let t0 = now();
      await forward();
      f.push(now() - t0);
      t0 = now();
      const tape = await model.forwardForGrad(examples, { checkpointing });
      await tape.backward();
      tr.push(now() - t0);
    }
    const fm = median(f), tm = median(tr);
    rows.push({ case: `training step (forward, ${checkpointing === 'layer' ? 'recompute' : 'kept activations'}, backward), ${T} rows`, value: `${(tm / T).toFixed(2)} ms/token`,
      ratio: `${(tm / fm).toFixed(2)}× the forward (${(fm / T).toFixed(2)} ms/token)`, target: '≤ 3×' });
  }
  await model.dispose();
  if (args.has('--demos')) {
    for (const [file, steps, target] of [['prompt-tuning.mjs', 60, '≤ 90 s'], ['neural-recursion.mjs', 40, '≤ 120 s'], ['input-dependent-prompt.mjs', 40, ''], ['frozen-reader.mjs', 30, '']] as const) {
      const out = JSON.parse(execFileSync(process.execPath, [path.join(__dirname, '..', '..', 'examples', file), '--steps', String(steps), '--json'], { encoding: 'utf8' })) as { seconds: number; final: unknown };
      rows.push({ case: `demo ${file}, ${steps} steps`, value: `${out.seconds.toFixed(1)} s`, ratio: `held-out ${JSON.stringify(out.final)}`, target });
    }
  }
  if (args.has('--json')) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  const lines = ['| case | cost | ratio | target |', '|---|---|---|---|', ...rows.map((r) => `| ${r.case} | ${r.value} | ${r.ratio ?? ''} | ${r.target ?? ''} |`)];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});

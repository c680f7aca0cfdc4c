/** What the CLI commands share: usage errors, number flags, logging, loading a model with a progress bar. */
import fs from 'node:fs';
import { loadModel, JambaModel } from '../model';
import { defaultModelDir } from '../paths';

export class UsageError extends Error {}

export function num(v: string | undefined, name: string, int = false): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (int && !Number.isInteger(n))) throw new UsageError(`--${name} must be ${int ? 'an integer' : 'a number'}, got ${JSON.stringify(v)}`);
  return n;
}

export const log = (msg: string) => process.stderr.write(`${msg}\n`);

/** A progress bar on stderr while a checkpoint loads (only when stderr is a terminal). */
export function progressBar(quiet: boolean): ((done: number, total: number) => void) | undefined {
  if (quiet || !process.stderr.isTTY) return undefined;
  let last = -1;
  return (done, total) => {
    const pct = Math.floor((100 * done) / total);
    if (pct === last) return;
    last = pct;
    const width = 30, fill = Math.round((width * done) / total);
    process.stderr.write(`\rjamba: loading [${'#'.repeat(fill)}${' '.repeat(width - fill)}] ${pct}% of ${(total / 2 ** 20).toFixed(0)} MiB`);
    if (done >= total) process.stderr.write('\n');
  };
}

export function loadTemplate(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
}

export async function open(modelDir: string | undefined, int8: boolean | undefined, quiet: boolean): Promise<JambaModel> {
  const dir = modelDir ?? defaultModelDir();
  const t0 = performance.now();
  const model = await loadModel(dir, { expertsInt8: int8 ?? false, onProgress: progressBar(quiet) });
  if (!quiet) log(`jamba: loaded ${dir} in ${(performance.now() - t0).toFixed(0)} ms (${model.inspect().threads} threads, cpu)`);
  return model;
}

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function print(text: string): number {
  process.stdout.write(`${text}\n`);
  return 0;
}


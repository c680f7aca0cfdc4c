/**
 * The BM25 index at scale against real Lucene (`npm run bench:ralm-index -- [--passages N]
 * [--rounds R] [--no-lucene]`, default 1,000,000 passages and 3 rounds): synthetic 100-word
 * passages (a Zipfian vocabulary of 200,000 words, a title on every passage) and 200 queries of 32
 * words. Both engines index the same passages (ours from JSONL, Lucene from the same text as TSV,
 * EnglishAnalyzer, BM25(0.9, 0.4), one segment, as Pyserini) and answer the same queries, each hit's
 * text fetched. Each build and each query pass runs in a fresh process whose peak resident memory
 * is read from /proc; query passes alternate between the engines, and each latency figure is the
 * median over the rounds. Lucene runs when scripts/lucene/harness.sh finds a JDK and Lucene 8
 * (Debian: default-jdk-headless, liblucene8-java). Prints a Markdown table with the ratios to
 * Lucene and an extrapolation to DPR's Wikipedia (21 M passages). Writes under $TMPDIR and removes
 * it after.
 */
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bm25Retriever } from '../lib';
import { xorshift as rng } from '../test/helpers/xorshift';

const VOCAB = 200_000, QUERIES = 200, DPR = 21_015_324;
const HARNESS = path.join(__dirname, '..', '..', 'scripts', 'lucene', 'harness.sh');

// Word i has probability ∝ 1 / (i + 10): a Zipf law with a flattened head, like running text
// after stop words are removed. Sampled by inverting the cumulative sum.
const cdf = new Float64Array(VOCAB);
{
  let s = 0;
  for (let i = 0; i < VOCAB; i++) cdf[i] = s += 1 / (i + 10);
  for (let i = 0; i < VOCAB; i++) cdf[i]! /= s;
}
const word = (u: number) => {
  let lo = 0, hi = VOCAB - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid]! < u) lo = mid + 1;
    else hi = mid;
  }
  return `w${lo.toString(36)}x`;
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

/** Runs a command to its end; its stdout's last line as JSON, and its peak resident memory (VmHWM). */
function measured(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ out: Record<string, unknown>; peak: number }> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '', peak = 0;
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peak = Math.max(peak, Number(m[1]) * 1024);
      } catch {
        // exited between polls
      }
    }, 50);
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(poll);
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`));
      resolve({ out: JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>, peak });
    });
  });
}

function dirBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}

const escape = (s: string) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t');

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flag = (name: string, dflt: number) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : dflt;
  };
  const N = flag('passages', 1_000_000), rounds = flag('rounds', 3);
  // The harness exits non-zero without a JDK and Lucene: the table then has our side alone.
  const version = argv.includes('--no-lucene') ? undefined : await measured('bash', [HARNESS, 'version']).then((r) => r.out, () => undefined);
  const lucene = version !== undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-ralm-index-'));
  try {
    const jsonl = path.join(dir, 'passages.jsonl'), tsv = path.join(dir, 'passages.tsv'), queries = path.join(dir, 'queries.tsv');
    const r = rng(1);
    const j = fs.openSync(jsonl, 'w'), t = fs.openSync(tsv, 'w');
    let lines: string[] = [], rows: string[] = [];
    for (let i = 0; i < N; i++) {
      const p = { id: String(i + 1), title: `Title ${word(r())} ${i % 1000}`, text: Array.from({ length: 100 }, () => word(r())).join(' ') };
      lines.push(JSON.stringify(p));
      rows.push(`${p.id}\t${escape(`${p.title}\n${p.text}`)}`);
      if (lines.length === 10_000 || i === N - 1) {
        fs.writeSync(j, `${lines.join('\n')}\n`);
        fs.writeSync(t, `${rows.join('\n')}\n`);
        lines = [];
        rows = [];
      }
    }
    fs.closeSync(j);
    fs.closeSync(t);
    const q = rng(2);
    fs.writeFileSync(queries, Array.from({ length: QUERIES }, (_, i) => `q${i}\t${Array.from({ length: 32 }, () => word(q())).join(' ')}`).join('\n'));
    const corpusBytes = fs.statSync(jsonl).size;

    const index = path.join(dir, 'index.bm25'), luceneDir = path.join(dir, 'lucene');
    const self = [__filename];
    const ours = await measured(process.execPath, [...self, '--build', jsonl, index]);
    const theirs = lucene ? await measured('bash', [HARNESS, 'build', tsv, luceneDir]) : undefined;
    const size = fs.statSync(index).size, luceneSize = lucene ? dirBytes(luceneDir) : 0;
    const luceneStored = lucene ? fs.readdirSync(luceneDir).filter((f) => f.endsWith('.fdt')).reduce((n, f) => n + fs.statSync(path.join(luceneDir, f)).size, 0) : 0;

    // Query passes, alternating engines: per round, each engine's p50 and p99 at top 1 and 10.
    const ourRounds: Array<Record<string, number[]>> = [], lucRounds: Array<Record<string, number[]>> = [];
    let ourPeak = 0, lucPeak = 0, batched = 0;
    for (let round = 0; round < rounds; round++) {
      const a = await measured(process.execPath, [...self, '--query', index, queries]);
      ourRounds.push(a.out as Record<string, number[]>);
      ourPeak = Math.max(ourPeak, a.peak);
      batched = Math.max(batched, Number(a.out.batchedPerSecond));
      if (lucene) {
        const b = await measured('bash', [HARNESS, 'query', luceneDir, queries, '1']);
        lucRounds.push(b.out as Record<string, number[]>);
        lucPeak = Math.max(lucPeak, b.peak);
      }
    }
    const stat = (rs: Array<Record<string, number[]>>, k: string, p: number) => median(rs.map((x) => pct(x[k]!, p)));
    const scale = DPR / N;

    console.log(`**${os.cpus()[0]?.model ?? 'CPU'}** (${os.cpus().length} threads), Node ${process.version}` +
                `${lucene ? `, Lucene ${String(version!.lucene)} on Java ${String(version!.java)}` : ', no Lucene (no JDK or liblucene8-java)'}; ` +
                `${N.toLocaleString('en')} passages of 100 words ` +
                `(JSONL ${mib(corpusBytes)}), vocabulary ${VOCAB.toLocaleString('en')} (Zipf), ${QUERIES} queries of 32 words; ` +
                `latencies are medians over ${rounds} alternating rounds of each engine's p50/p99, each hit's text fetched.\n`);
    const cmp = (a: number, b: number) => (lucene ? `${(a / b).toFixed(2)}×` : '—');
    console.log('| measure | jamba-node | Lucene 8 (Pyserini\'s setup) | ratio | jamba-node, extrapolated to 21 M passages |\n|---|---|---|---|---|');
    const ob = Number(ours.out.build), lb = Number(theirs?.out.build ?? NaN);
    console.log(`| build | ${ob.toFixed(0)} s | ${lucene ? `${lb.toFixed(0)} s` : '—'} | ${cmp(ob, lb)} | ${((ob * scale) / 3600).toFixed(1)} h (linear) |`);
    console.log(`| index on disk | ${mib(size)} | ${lucene ? `${mib(luceneSize)}${luceneStored ? ` (${mib(luceneStored)} of it stored text)` : ''}` : '—'} | ${cmp(size, luceneSize)} | ${((size * scale) / 2 ** 30).toFixed(1)} GiB |`);
    for (const k of ['1', '10'])
      for (const p of [50, 99]) {
        const a = stat(ourRounds, k, p), b = lucene ? stat(lucRounds, k, p) : NaN;
        console.log(`| query p${p}, top ${k} | ${a.toFixed(2)} ms | ${lucene ? `${b.toFixed(2)} ms` : '—'} | ${cmp(a, b)} | ${(a * scale).toFixed(0)} ms (postings grow with the corpus) |`);
      }
    console.log(`| queries/s, 200 at once (retrieveMany, top 10) | ${batched.toFixed(0)} | — | — | — |`);
    console.log(`| peak resident memory, building | ${mib(ours.peak)} | ${lucene ? mib(theirs!.peak) : '—'} | ${cmp(ours.peak, theirs?.peak ?? NaN)} | bounded by --memory (256 MiB of postings) and the norms |`);
    console.log(`| peak resident memory, querying | ${mib(ourPeak)} | ${lucene ? mib(lucPeak) : '—'} | ${cmp(ourPeak, lucPeak)} | the index is mapped, not read |`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A build in its own process: {"build": seconds}. */
async function build(jsonl: string, file: string): Promise<void> {
  const t0 = performance.now();
  const r = await Bm25Retriever.buildIndex(jsonl, file);
  r.close();
  process.stdout.write(`${JSON.stringify({ build: (performance.now() - t0) / 1000 })}\n`);
}

/** The queries in their own process, as the harness runs Lucene's: warm-up, then top 1 and 10. */
async function query(file: string, queries: string): Promise<void> {
  const qs = fs.readFileSync(queries, 'utf8').split('\n').filter(Boolean).map((l) => l.slice(l.indexOf('\t') + 1));
  const r = await Bm25Retriever.load(file);
  for (const text of qs) await r.retrieve(text, 10);
  const out: Record<string, number[] | number> = {};
  for (const k of [1, 10]) {
    const ms: number[] = [];
    for (const text of qs) {
      const t = performance.now();
      const hits = await r.retrieve(text, k);
      ms.push(performance.now() - t);
      if (hits.length !== k) throw new Error('a query found too little');
    }
    out[String(k)] = ms;
  }
  const t = performance.now();
  await r.retrieveMany(qs, 10);
  out.batchedPerSecond = qs.length / ((performance.now() - t) / 1000);
  r.close();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

const mode = process.argv[2];
void (mode === '--build' ? build(process.argv[3]!, process.argv[4]!) : mode === '--query' ? query(process.argv[3]!, process.argv[4]!) : main());

/**
 * The disk index at scale (`npm run bench:ralm-index -- [passages]`, default 1,000,000): synthetic
 * 100-word passages (a Zipfian vocabulary of 200,000 words, titles on every passage) streamed from
 * a JSONL file into a SQLite index, then 32-token queries in a fresh process (so that its memory is
 * the querying's alone). Reports build time, index size, query latency p50/p99 and resident
 * memory while building and querying (sampled every 100 ms), and extrapolates to DPR's Wikipedia
 * (21 M passages). Writes under $TMPDIR and removes it after.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bm25Retriever } from '../lib';

const N = Number(process.argv[2] ?? 1_000_000);
const QUERY_FILE = process.argv[2] === '--query' ? process.argv[3] : undefined;
const VOCAB = 200_000, QUERIES = 200, DPR = 21_015_324;

/** Deterministic: xorshift32. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

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

function peakSampler(): { stop(): number } {
  let peak = process.memoryUsage().rss;
  const t = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 100);
  return { stop: () => (clearInterval(t), Math.max(peak, process.memoryUsage().rss)) };
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-ralm-index-'));
  try {
    const corpus = path.join(dir, 'passages.jsonl');
    const r = rng(1);
    const out = fs.openSync(corpus, 'w');
    let lines: string[] = [];
    for (let i = 0; i < N; i++) {
      const text = Array.from({ length: 100 }, () => word(r())).join(' ');
      lines.push(JSON.stringify({ id: String(i + 1), title: `Title ${word(r())} ${i % 1000}`, text }));
      if (lines.length === 10_000) {
        fs.writeSync(out, `${lines.join('\n')}\n`);
        lines = [];
      }
    }
    fs.writeSync(out, lines.join('\n'));
    fs.closeSync(out);
    const corpusBytes = fs.statSync(corpus).size;

    const file = path.join(dir, 'index.sqlite');
    const base = process.memoryUsage().rss;
    const build = peakSampler();
    const t0 = performance.now();
    const retriever = await Bm25Retriever.buildSqlite(corpus, file, {
      onProgress: (d) => { if (process.stderr.isTTY) process.stderr.write(`\rindexed ${d}/${N}`); },
    });
    const buildS = (performance.now() - t0) / 1000;
    const buildPeak = build.stop();
    if (process.stderr.isTTY) process.stderr.write('\n');
    const size = fs.statSync(file).size;

    retriever.close();
    const q = JSON.parse(execFileSync(process.execPath, [__filename, '--query', file], { encoding: 'utf8' })) as { times: number[]; peak: number; base: number };
    const { times, peak: queryPeak, base: queryBase } = q;
    times.sort((a, b) => a - b);
    const pct = (p: number) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))]!;
    const scale = DPR / N;

    console.log(`**${os.cpus()[0]?.model ?? 'CPU'}**, Node ${process.version}; ${N.toLocaleString('en')} passages of 100 words ` +
                `(JSONL ${mib(corpusBytes)}), vocabulary ${VOCAB.toLocaleString('en')} (Zipf), ${QUERIES} queries of 32 words, top 1\n`);
    console.log('| measure | value | extrapolated to 21 M passages |\n|---|---|---|');
    console.log(`| build time | ${buildS.toFixed(0)} s (${(N / buildS).toFixed(0)} passages/s) | ${((buildS * scale) / 3600).toFixed(1)} h (linear) |`);
    console.log(`| index size | ${mib(size)} (${(size / corpusBytes).toFixed(2)}× the JSONL) | ${((size * scale) / 2 ** 30).toFixed(0)} GiB |`);
    console.log(`| query latency p50 / p99 | ${pct(50).toFixed(1)} / ${pct(99).toFixed(1)} ms | ${(pct(50) * scale).toFixed(0)} / ${(pct(99) * scale).toFixed(0)} ms (postings grow with the corpus) |`);
    console.log(`| resident memory, building (peak; ${mib(base)} before) | ${mib(buildPeak)} | the same: one batch of 50,000 passages at a time |`);
    console.log(`| resident memory, querying (peak; ${mib(queryBase)} with the index open) | ${mib(queryPeak)} | the same: the blocks of the query's terms in hand |`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The queries, in a process of their own: latencies and resident memory. */
async function queries(file: string): Promise<void> {
  const retriever = Bm25Retriever.load(file);
  const base = process.memoryUsage().rss;
  const sampler = peakSampler();
  const q = rng(2);
  const times: number[] = [];
  for (let i = 0; i < QUERIES; i++) {
    const text = Array.from({ length: 32 }, () => word(q())).join(' ');
    const t = performance.now();
    const hits = await retriever.retrieve(text, 1);
    times.push(performance.now() - t);
    if (hits.length !== 1) throw new Error('a query found nothing');
  }
  const peak = sampler.stop();
  retriever.close();
  process.stdout.write(JSON.stringify({ times, peak, base }));
}

void (QUERY_FILE ? queries(QUERY_FILE) : main());

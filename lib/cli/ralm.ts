/** The retrieval commands: `jamba ralm`, `jamba index`, and `jamba eval --ralm`. */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError, log, num, open, print } from './common';
import { CorpusError } from '../errors';
import type { GenerateOptions } from '../generation';
import type { JambaModel } from '../model';
import { RalmEvalResult, ralmPerplexity } from '../ralm/eval';
import type { RetrievalOptions } from '../ralm/types';
import { Bm25Retriever } from '../retrieval/bm25';
import { corpusFiles, corpusPassages, readTextFile } from '../retrieval/corpus';
import { ClusterEngine, SearchClient, createRalmIndex, indexPassages } from '../retrieval/search-cluster';
import type { ExcludeOptions } from '../retrieval/exclude';
import { fileHead, isJsonIndex } from '../retrieval/legacy-index';

const isTty = () => process.stderr.isTTY;

function indexProgress(quiet: boolean): ((done: number) => void) | undefined {
  if (quiet || !isTty()) return undefined;
  return (done) => process.stderr.write(`\rjamba: indexed ${done} passages`);
}

/** Is `file` an index (written by `jamba index`, or a JSON or SQLite index of an earlier version)? */
function looksLikeIndex(file: string): boolean {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) return false;
  const head = fileHead(file, 16).toString('latin1');
  return head.startsWith('JNBM25\r\n') || head.startsWith('SQLite format 3\0') || isJsonIndex(file);
}

/**
 * A retriever over a corpus path: a saved index is loaded, anything else is indexed. With
 * `toFraction` (and a model), each corpus file is cut to its tokens before floor(F × n).
 */
export async function openCorpus(paths: string[], quiet: boolean, cut?: { model: JambaModel; fraction: number }): Promise<Bm25Retriever> {
  const t0 = performance.now();
  let r: Bm25Retriever;
  if (paths.length === 1 && looksLikeIndex(paths[0]!)) {
    if (cut) throw new UsageError('--corpus-to-fraction needs the corpus text, not a saved index');
    r = await Bm25Retriever.load(paths[0]!);
  } else if (cut) {
    const texts = [];
    for (const { file, name } of corpusFiles(paths)) {
      const ids = await cut.model.tokenizer.encode(await readTextFile(file), { addSpecialTokens: false });
      texts.push({ text: cut.model.tokenizer.decode(ids.slice(0, Math.floor(cut.fraction * ids.length))), source: name });
    }
    r = await Bm25Retriever.fromTexts(texts, { onProgress: indexProgress(quiet) });
  } else {
    r = await Bm25Retriever.fromPath(paths, { onProgress: indexProgress(quiet) });
  }
  if (!quiet && isTty()) process.stderr.write('\n');
  if (!quiet) log(`jamba: ${r.size} passages ready in ${(performance.now() - t0).toFixed(0)} ms`);
  return r;
}

const positive = (v: string | undefined, name: string) => {
  const n = num(v, name, true);
  if (n !== undefined && n < 1) throw new UsageError(`--${name} must be at least 1`);
  return n;
};

const retrievalFlags = {
  corpus: { type: 'string', multiple: true }, stride: { type: 'string' }, 'query-tokens': { type: 'string' },
  'max-passage-tokens': { type: 'string' }, rerank: { type: 'string' },
} as const;

function retrievalOptions(values: Record<string, unknown>, retriever: Bm25Retriever): RetrievalOptions {
  const o: RetrievalOptions = { retriever };
  const stride = positive(values.stride as string | undefined, 'stride');
  const q = positive(values['query-tokens'] as string | undefined, 'query-tokens');
  const mp = positive(values['max-passage-tokens'] as string | undefined, 'max-passage-tokens');
  const rk = positive(values.rerank as string | undefined, 'rerank');
  if (stride !== undefined) o.stride = stride;
  if (q !== undefined) o.queryTokens = q;
  if (mp !== undefined) o.maxPassageTokens = mp;
  if (rk !== undefined) o.rerank = { k: rk };
  return o;
}

export async function ralm(argv: string[], help: string): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      ...retrievalFlags, model: { type: 'string' }, 'max-tokens': { type: 'string' }, temperature: { type: 'string' }, 'top-k': { type: 'string' },
      'top-p': { type: 'string' }, seed: { type: 'string' }, stop: { type: 'string', multiple: true }, 'experts-int8': { type: 'boolean' },
      json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return print(help);
  if (!values.corpus?.length) throw new UsageError('--corpus PATH is required');
  if (positionals.length !== 1) throw new UsageError('give the prompt as one argument (quote it)');
  const quiet = !!values.json;
  const retriever = await openCorpus(values.corpus, quiet);
  const model = await open(values.model, values['experts-int8'], quiet);
  const opts: GenerateOptions = {
    maxTokens: num(values['max-tokens'], 'max-tokens', true), temperature: num(values.temperature, 'temperature'),
    topK: num(values['top-k'], 'top-k', true), topP: num(values['top-p'], 'top-p'), seed: num(values.seed, 'seed', true), stop: values.stop,
  };
  for (const k of Object.keys(opts) as Array<keyof GenerateOptions>) if (opts[k] === undefined) delete opts[k];
  const ac = new AbortController();
  const onSigint = () => ac.abort();
  process.once('SIGINT', onSigint);
  try {
    const t0 = performance.now();
    const it = model.generate(positionals[0]!, { ...opts, retrieval: retrievalOptions(values, retriever), signal: ac.signal });
    for (;;) {
      const r = await it.next();
      if (!r.done) {
        if (!quiet) process.stdout.write(r.value);
        continue;
      }
      const res = r.value;
      const ms = performance.now() - t0;
      const used = (res.retrievals ?? []).map((x) => ({ atToken: x.atToken, query: x.query, passage: x.passage?.id ?? null, score: x.passage?.score, kept: x.kept }));
      if (quiet) {
        process.stdout.write(`${JSON.stringify({ text: res.text, tokens: res.tokens, finishReason: res.finishReason, retrievals: used, ms: Math.round(ms) })}\n`);
      } else {
        if (!res.text.endsWith('\n')) process.stdout.write('\n');
        const changed = used.filter((u) => !u.kept);
        log(`jamba: ${res.tokens.length} tokens in ${ms.toFixed(0)} ms, ${used.length} retrievals, passages: ${[...new Set(changed.map((u) => u.passage))].join(', ') || 'none'}`);
      }
      return 0;
    }
  } finally {
    process.off('SIGINT', onSigint);
    await model.dispose();
  }
}

/** The client of a cluster, from its optional peer dependency. */
function clusterClient(engine: ClusterEngine, url: string): SearchClient {
  const pkg = engine === 'elasticsearch' ? '@elastic/elasticsearch' : '@opensearch-project/opensearch';
  let mod: { Client: new (o: { node: string }) => SearchClient };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require(pkg) as typeof mod;
  } catch {
    throw new UsageError(`--${engine} needs the ${pkg} package: npm install ${pkg}`);
  }
  return new mod.Client({ node: url });
}

export async function index(argv: string[], help: string): Promise<number> {
  const { values } = parseArgs({
    args: argv, options: {
      corpus: { type: 'string', multiple: true }, out: { type: 'string' }, words: { type: 'string' }, memory: { type: 'string' },
      'exact-lengths': { type: 'boolean' }, 'lucene-norms': { type: 'boolean' }, elasticsearch: { type: 'string' }, opensearch: { type: 'string' },
      index: { type: 'string' }, shards: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return print(help);
  const cluster = values.elasticsearch !== undefined ? 'elasticsearch' : values.opensearch !== undefined ? 'opensearch' : undefined;
  if (values.elasticsearch !== undefined && values.opensearch !== undefined) throw new UsageError('--elasticsearch and --opensearch exclude each other');
  if (!values.corpus?.length) throw new UsageError('--corpus PATH is required');
  if (values['exact-lengths'] && values['lucene-norms']) throw new UsageError('--exact-lengths and --lucene-norms exclude each other');
  const words = positive(values.words, 'words');
  const chunk = words ? { words } : {};
  const t0 = performance.now();
  if (cluster) {
    if (!values.index) throw new UsageError(`--${cluster} URL needs --index NAME`);
    if (values.out || values['exact-lengths'] || values.memory) throw new UsageError(`--out, --memory and --exact-lengths are for the built-in index, not --${cluster}`);
    const shards = positive(values.shards, 'shards');
    const client = clusterClient(cluster, (values.elasticsearch ?? values.opensearch)!);
    await createRalmIndex(client, values.index, { engine: cluster, ...(shards ? { shards } : {}) });
    const n = await indexPassages(client, values.index, corpusPassages(values.corpus, true, chunk), { engine: cluster, onProgress: indexProgress(false) });
    if (isTty()) process.stderr.write('\n');
    log(`jamba: indexed ${n} passages in ${(performance.now() - t0).toFixed(0)} ms → ${cluster} index ${values.index}`);
    return 0;
  }
  if (!values.out) throw new UsageError('--out FILE is required (or --elasticsearch/--opensearch URL with --index NAME)');
  if (values.index || values.shards) throw new UsageError('--index and --shards go with --elasticsearch or --opensearch');
  const memoryMB = positive(values.memory, 'memory');
  const options = { chunk, luceneNorms: !values['exact-lengths'], onProgress: indexProgress(false), ...(memoryMB ? { memoryMB } : {}) };
  const r = await Bm25Retriever.buildIndex(values.corpus, values.out, options);
  if (isTty()) process.stderr.write('\n');
  log(`jamba: indexed ${r.size} passages in ${(performance.now() - t0).toFixed(0)} ms → ${values.out} (${(r.bytes / 2 ** 20).toFixed(1)} MiB)`);
  r.close();
  return 0;
}

/** The flags of `jamba eval` that go with --ralm. */
export const ralmEvalFlags = {
  ...retrievalFlags, 'corpus-to-fraction': { type: 'string' }, layout: { type: 'string' }, 'exclude-titles': { type: 'string' },
  'exclude-ids': { type: 'string' }, 'exclude-overlap': { type: 'boolean' }, 'overlap-words': { type: 'string' },
} as const;

/**
 * The tokens `jamba eval` scores (from --from-fraction on, at most --max-tokens) and their text:
 * the file's own text when it is scored whole, else the scored tokens decoded.
 */
export async function evaluatedPart(model: JambaModel, text: string, frac: number, maxTokens: number | undefined): Promise<{ ids: number[]; evaluated: string }> {
  const all = await model.tokenizer.encode(text, { addSpecialTokens: false });
  const ids = all.slice(Math.floor(frac * all.length), maxTokens === undefined ? undefined : Math.floor(frac * all.length) + maxTokens);
  return { ids, evaluated: ids.length === all.length ? text : model.tokenizer.decode(ids) };
}

function lines(file: string, flag: string): string[] {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '');
  } catch (e) {
    throw new UsageError(`--${flag}: cannot read ${file}: ${(e as Error).message}`);
  }
}

/** `jamba eval --ralm`: the same tokens scored with and without retrieval. */
export async function evaluateRalm(values: Record<string, unknown>, text: string, file: string): Promise<number> {
  const corpus = values.corpus as string[] | undefined;
  if (!corpus?.length) throw new UsageError('--ralm needs --corpus PATH');
  const quiet = !!values.json;
  const frac = num(values['from-fraction'] as string | undefined, 'from-fraction') ?? 0;
  const cutFrac = num(values['corpus-to-fraction'] as string | undefined, 'corpus-to-fraction');
  if (frac < 0 || frac >= 1) throw new UsageError('--from-fraction must be in [0, 1)');
  if (cutFrac !== undefined && (cutFrac <= 0 || cutFrac > 1)) throw new UsageError('--corpus-to-fraction must be in (0, 1]');
  const layout = (values.layout as string | undefined) ?? 'bos';
  if (layout !== 'bos' && layout !== 'paper') throw new UsageError(`--layout must be 'bos' or 'paper', got ${JSON.stringify(layout)}`);
  const overlapWords = positive(values['overlap-words'] as string | undefined, 'overlap-words');
  if (overlapWords !== undefined && !values['exclude-overlap']) throw new UsageError('--overlap-words goes with --exclude-overlap');
  const exclude: ExcludeOptions = {};
  if (values['exclude-titles']) exclude.titles = lines(values['exclude-titles'] as string, 'exclude-titles');
  if (values['exclude-ids']) exclude.ids = lines(values['exclude-ids'] as string, 'exclude-ids');
  const maxTokens = positive(values['max-tokens'] as string | undefined, 'max-tokens');
  const model = await open(values.model as string | undefined, values['experts-int8'] as boolean | undefined, quiet);
  try {
    const retriever = await openCorpus(corpus, quiet, cutFrac === undefined ? undefined : { model, fraction: cutFrac });
    const { ids, evaluated } = await evaluatedPart(model, text, frac, maxTokens);
    if (values['exclude-overlap']) {
      exclude.overlapText = evaluated;
      if (overlapWords !== undefined) exclude.overlapWords = overlapWords;
    }
    const { retriever: _r, ...ropts } = retrievalOptions(values, retriever);
    void _r;
    const common = { ...ropts, layout, text: evaluated, window: positive(values.window as string | undefined, 'window') } as const;
    const progress = (label: string) => (quiet || !isTty() ? undefined : (d: number, t: number) => process.stderr.write(`\rjamba: ${label} ${d}/${t} windows`));
    const plain = await ralmPerplexity(model, ids, { ...common, onProgress: progress('without retrieval') });
    if (!quiet && isTty()) process.stderr.write('\n');
    const withR = await ralmPerplexity(model, ids, { ...common, retriever, exclude, onProgress: progress('with retrieval') });
    if (!quiet && isTty()) process.stderr.write('\n');
    if (quiet) {
      process.stdout.write(`${JSON.stringify({ file, passages: retriever.size, layout, withoutRetrieval: plain, withRetrieval: withR, overhead: withR.ms / plain.ms })}\n`);
    } else {
      const line = (name: string, r: RalmEvalResult) => `${name}  nll ${r.nll.toFixed(6)}  perplexity ${r.perplexity.toFixed(4)}  tokens ${r.tokens}  ` +
        `word perplexity ${r.wordPerplexity!.toFixed(4)}  words ${r.words}  windows ${r.windows}  ${(r.ms / 1000).toFixed(1)} s`;
      process.stdout.write(`${line('without retrieval', plain)}\n${line('with retrieval   ', withR)}\n`);
      log(`jamba: layout ${layout}; retrieval changed word perplexity by ${(100 * (withR.wordPerplexity! / plain.wordPerplexity! - 1)).toFixed(2)}%; ` +
          `time ×${(withR.ms / plain.ms).toFixed(2)} (${withR.cachedPassageStates}/${withR.retrievals} passage states from the cache); ` +
          `${withR.excluded} retrieved passages excluded`);
    }
    return 0;
  } finally {
    await model.dispose();
  }
}

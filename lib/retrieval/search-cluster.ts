/**
 * Retrieval from an Elasticsearch or OpenSearch cluster, scored exactly as Pyserini scores: their
 * BM25 is Lucene's, so with the index `createRalmIndex` writes (the `english` analyzer, BM25 with
 * k1 0.9 and b 0.4, one `contents` field of title + newline + text, one shard or DFS statistics)
 * and Pyserini's query (each distinct analyzed term a term query boosted by its count, the terms
 * analyzed here by the same analyzer), a hit's `_score` is the built-in index's score bit for bit.
 * Ties break by a numeric passage-order field, as Lucene breaks them by doc id in one segment.
 *
 * The user creates the client (`@elastic/elasticsearch` 8 or 9, or
 * `@opensearch-project/opensearch` 2 or 3, optional peer dependencies) with whatever connection,
 * authentication and retry settings they need; the two clients differ in how a request's body is
 * passed, how a response comes back and how a request is aborted, and `ClusterApi` hides that. The
 * clients retry 502, 503 and 504 themselves; 429 ("too many requests") is retried here, with
 * backoff, honouring Retry-After, and never twice over.
 */
import { AbortError, CorpusError, InvalidArgumentError } from '../errors';
import { analyze } from './analyzer';
import type { CorpusPassage } from './corpus';
import type { Passage, RetrieveOptions, Retriever } from './types';

export type ClusterEngine = 'elasticsearch' | 'opensearch';

/** The part of either client this module uses. */
export interface SearchClient {
  search(params: Record<string, unknown>, options?: Record<string, unknown>): Promise<unknown>;
  msearch(params: Record<string, unknown>, options?: Record<string, unknown>): Promise<unknown>;
  bulk(params: Record<string, unknown>, options?: Record<string, unknown>): Promise<unknown>;
  indices: {
    create(params: Record<string, unknown>, options?: Record<string, unknown>): Promise<unknown>;
    refresh(params: Record<string, unknown>, options?: Record<string, unknown>): Promise<unknown>;
    forcemerge(params: Record<string, unknown>, options?: Record<string, unknown>): Promise<unknown>;
  };
}

export interface RalmIndexOptions {
  /** Which client this is (default: detected; only the Elasticsearch client has `eql`). */
  engine?: ClusterEngine;
  /**
   * Primary shards (default 1). With more, every search runs as `dfs_query_then_fetch` so that
   * BM25's statistics are the whole index's, which keeps scores exact at one more round trip.
   */
  shards?: number;
  /** Replicas (default: the cluster's). */
  replicas?: number;
}

export interface ClusterRetrieverOptions {
  engine?: ClusterEngine;
  /** Times a request refused with 429 is sent again (default 5), after 100 ms doubling, or Retry-After. */
  retries429?: number;
  /** Passed on with every search (routing, preference, ...). */
  searchParams?: Record<string, unknown>;
}

/** The index's fields: `contents` is what is scored; `title` and `text` what a passage returns. */
export const RALM_MAPPINGS = {
  dynamic: 'strict',
  _source: { excludes: ['contents'] },
  properties: {
    id: { type: 'keyword' },
    title: { type: 'text', index: false },
    text: { type: 'text', index: false },
    source: { type: 'keyword', index: false },
    order: { type: 'long' },
    contents: { type: 'text', analyzer: 'english', similarity: 'pyserini_bm25', index_options: 'freqs' },
  },
} as const;

export const ralmSettings = (shards: number, replicas: number | undefined) => ({
  number_of_shards: shards,
  ...(replicas !== undefined ? { number_of_replicas: replicas } : {}),
  similarity: { pyserini_bm25: { type: 'BM25', k1: 0.9, b: 0.4 } },
});

const META_KEY = 'jamba_ralm';

function detect(client: SearchClient, engine: ClusterEngine | undefined): ClusterEngine {
  if (engine !== undefined) {
    if (engine !== 'elasticsearch' && engine !== 'opensearch') throw new InvalidArgumentError(`engine must be 'elasticsearch' or 'opensearch', got ${String(engine)}`);
    return engine;
  }
  if (client === null || typeof client !== 'object' || typeof client.search !== 'function' || typeof client.msearch !== 'function')
    throw new InvalidArgumentError('client must be an @elastic/elasticsearch or @opensearch-project/opensearch Client');
  return typeof (client as unknown as { eql?: { search?: unknown } }).eql?.search === 'function' ? 'elasticsearch' : 'opensearch';
}

interface HttpError {
  statusCode?: number;
  meta?: { statusCode?: number; headers?: Record<string, string> };
  headers?: Record<string, string>;
}

const statusOf = (e: unknown) => (e as HttpError)?.meta?.statusCode ?? (e as HttpError)?.statusCode;
const retryAfter = (e: unknown) => {
  const h = (e as HttpError)?.meta?.headers ?? (e as HttpError)?.headers;
  const v = Number(h?.['retry-after']);
  return Number.isFinite(v) && v >= 0 ? v * 1000 : undefined;
};

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortError());
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new AbortError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** One client's way of sending a request: the body, the response and abort, made the same. */
class ClusterApi {
  constructor(readonly client: SearchClient, readonly engine: ClusterEngine, private readonly retries429: number) {}

  /** Calls `fn(params with the body placed as this client wants, transport options)`, retrying 429s. */
  async call(fn: (p: Record<string, unknown>, o: Record<string, unknown>) => Promise<unknown>, params: Record<string, unknown>, body: object | undefined,
             bodyKey: string, signal?: AbortSignal): Promise<unknown> {
    const p = body === undefined ? params
      : this.engine === 'elasticsearch' ? { ...params, ...(bodyKey === 'body' ? (body as object) : { [bodyKey]: body }) } : { ...params, body };
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw new AbortError();
      try {
        return this.unwrap(await this.send(fn, p, signal));
      } catch (e) {
        if (signal?.aborted) throw new AbortError();
        if (statusOf(e) !== 429 || attempt >= this.retries429) throw e;
        await sleep(retryAfter(e) ?? 100 * 2 ** attempt, signal);
      }
    }
  }

  /** The Elasticsearch client takes an AbortSignal; OpenSearch's returns a promise with abort(). */
  private send(fn: (p: Record<string, unknown>, o: Record<string, unknown>) => Promise<unknown>, p: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> {
    if (this.engine === 'elasticsearch') return fn(p, signal ? { signal } : {});
    const req = fn(p, {}) as Promise<unknown> & { abort?: () => void };
    if (!signal) return req;
    const onAbort = () => req.abort?.();
    signal.addEventListener('abort', onAbort, { once: true });
    return req.finally(() => signal.removeEventListener('abort', onAbort));
  }

  /** OpenSearch's client answers { body, statusCode, ... }; Elasticsearch's (8+) the body itself. */
  private unwrap(res: unknown): unknown {
    const r = res as { body?: unknown; statusCode?: unknown };
    return this.engine === 'opensearch' && r && typeof r === 'object' && 'body' in r && 'statusCode' in r ? r.body : res;
  }
}

/** Pyserini's bag-of-words query: each distinct term of the English analyzer, boosted by its count. */
export function bagOfWordsQuery(text: string): Record<string, unknown> | null {
  const counts = new Map<string, number>();
  for (const t of analyze(text, 'english')) counts.set(t, (counts.get(t) ?? 0) + 1);
  if (counts.size === 0) return null;
  return { bool: { should: [...counts].map(([value, boost]) => ({ term: { contents: { value, boost } } })) } };
}

interface Hit {
  _id?: string;
  _score?: number;
  _source?: { id?: unknown; title?: unknown; text?: unknown; source?: unknown; order?: unknown };
}

function toPassage(h: Hit, index: string): Passage {
  const s = h._source;
  if (!s || typeof s.id !== 'string' || typeof s.text !== 'string' || typeof h._score !== 'number')
    throw new CorpusError('returned a hit without the id, text and score of a passage: was it written by createRalmIndex and indexPassages?', index);
  const p: Passage = { id: s.id, text: s.text, score: h._score, metadata: { source: typeof s.source === 'string' ? s.source : index, index } };
  if (typeof s.title === 'string') p.title = s.title;
  return p;
}

/** The search body for the k best: Pyserini's query, ties by passage order, no total count. */
function searchBody(query: Record<string, unknown>, k: number) {
  return { query, size: k, sort: [{ _score: 'desc' }, { order: 'asc' }], track_scores: true, track_total_hits: false };
}

/**
 * A retriever over an index written by `createRalmIndex` and `indexPassages`, for an Elasticsearch
 * or OpenSearch client the caller made. `retrieveMany` sends one `_msearch`.
 */
export class ClusterRetriever implements Retriever {
  private readonly api: ClusterApi;
  private dfs: boolean | undefined;

  constructor(client: SearchClient, readonly index: string, private readonly options: ClusterRetrieverOptions = {}) {
    if (typeof index !== 'string' || index === '') throw new InvalidArgumentError('index must be a non-empty string');
    const retries = options.retries429 ?? 5;
    if (!Number.isInteger(retries) || retries < 0) throw new InvalidArgumentError(`retries429 must be a non-negative integer, got ${String(options.retries429)}`);
    this.api = new ClusterApi(client, detect(client, options.engine), retries);
  }

  get engine(): ClusterEngine {
    return this.api.engine;
  }

  /** More than one shard: DFS first, so BM25's statistics are the whole index's (read from its mapping's _meta once). */
  private async searchType(signal?: AbortSignal): Promise<Record<string, unknown>> {
    if (this.dfs === undefined) {
      const c = this.api.client as unknown as { indices: { get(p: Record<string, unknown>, o?: Record<string, unknown>): Promise<unknown> } };
      const got = await this.api.call((p, o) => c.indices.get(p, o), { index: this.index }, undefined, 'body', signal) as Record<string, { settings?: { index?: { number_of_shards?: string } } }>;
      const shards = Number(Object.values(got ?? {})[0]?.settings?.index?.number_of_shards ?? 1);
      this.dfs = shards > 1;
    }
    return this.dfs ? { search_type: 'dfs_query_then_fetch' } : {};
  }

  async retrieve(query: string, k: number, options: RetrieveOptions = {}): Promise<Passage[]> {
    return (await this.retrieveMany([query], k, options))[0]!;
  }

  async retrieveMany(queries: string[], k: number, options: RetrieveOptions = {}): Promise<Passage[][]> {
    if (!Array.isArray(queries) || queries.some((q) => typeof q !== 'string')) throw new InvalidArgumentError('queries must be an array of strings');
    if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`k must be a positive integer, got ${String(k)}`);
    const signal = options.signal;
    if (signal?.aborted) throw new AbortError();
    const bodies = queries.map(bagOfWordsQuery);
    const asked = bodies.flatMap((b, i) => (b ? [i] : []));
    const out: Passage[][] = queries.map(() => []);
    if (asked.length === 0) return out;
    const type = await this.searchType(signal);
    const extra = this.options.searchParams ?? {};
    if (asked.length === 1) {
      const res = await this.api.call((p, o) => this.api.client.search(p, o), { index: this.index, ...type, ...extra }, searchBody(bodies[asked[0]!]!, k), 'body', signal) as { hits?: { hits?: Hit[] } };
      out[asked[0]!] = (res?.hits?.hits ?? []).map((h) => toPassage(h, this.index));
      return out;
    }
    // One _msearch; items refused with 429 are asked again (the others are kept).
    let pending = asked;
    for (let attempt = 0; ; attempt++) {
      const lines = pending.flatMap((i) => [{ index: this.index, ...type, ...extra }, searchBody(bodies[i]!, k)]);
      const res = await this.api.call((p, o) => this.api.client.msearch(p, o), {}, lines, 'searches', signal) as { responses?: Array<{ status?: number; error?: unknown; hits?: { hits?: Hit[] } }> };
      const items = res?.responses;
      if (!Array.isArray(items) || items.length !== pending.length) throw new CorpusError(`answered _msearch with ${Array.isArray(items) ? items.length : 'no'} responses for ${pending.length} searches`, this.index);
      const again: number[] = [];
      items.forEach((item, j) => {
        const i = pending[j]!;
        if (item.status === 429 && attempt < (this.options.retries429 ?? 5)) again.push(i);
        else if (item.error !== undefined) throw new CorpusError(`refused a search: ${JSON.stringify(item.error).slice(0, 300)}`, this.index);
        else out[i] = (item.hits?.hits ?? []).map((h) => toPassage(h, this.index));
      });
      if (again.length === 0) return out;
      pending = again;
      await sleep(100 * 2 ** attempt, signal);
    }
  }
}

/** An Elasticsearch retriever (`new ElasticsearchRetriever(new Client({ node }), 'wiki')`). */
export class ElasticsearchRetriever extends ClusterRetriever {
  constructor(client: SearchClient, index: string, options: Omit<ClusterRetrieverOptions, 'engine'> = {}) {
    super(client, index, { ...options, engine: 'elasticsearch' });
  }
}

/** An OpenSearch retriever (`new OpenSearchRetriever(new Client({ node }), 'wiki')`). */
export class OpenSearchRetriever extends ClusterRetriever {
  constructor(client: SearchClient, index: string, options: Omit<ClusterRetrieverOptions, 'engine'> = {}) {
    super(client, index, { ...options, engine: 'opensearch' });
  }
}

/**
 * Creates the index `name` with the settings that make its scores Pyserini's (see the top of this
 * file); fails if it exists.
 */
export async function createRalmIndex(client: SearchClient, name: string, options: RalmIndexOptions = {}): Promise<void> {
  if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('name must be a non-empty string');
  const shards = options.shards ?? 1;
  if (!Number.isInteger(shards) || shards < 1) throw new InvalidArgumentError(`shards must be a positive integer, got ${String(options.shards)}`);
  if (options.replicas !== undefined && (!Number.isInteger(options.replicas) || options.replicas < 0))
    throw new InvalidArgumentError(`replicas must be a non-negative integer, got ${String(options.replicas)}`);
  const api = new ClusterApi(client, detect(client, options.engine), 5);
  const body = { settings: ralmSettings(shards, options.replicas), mappings: { ...RALM_MAPPINGS, _meta: { [META_KEY]: 1 } } };
  await api.call((p, o) => client.indices.create(p, o), { index: name }, body, 'body');
}

export interface IndexPassagesOptions {
  engine?: ClusterEngine;
  /** Passages per bulk request (default 1000). */
  batch?: number;
  /** Merge the index into one segment at the end (default true): smaller and faster to search. */
  forceMerge?: boolean;
  onProgress?: (done: number) => void;
  signal?: AbortSignal;
}

/**
 * Bulk-loads passages (in corpus order: `order` numbers them from 0) into an index made by
 * `createRalmIndex`; items refused with 429 are sent again. Returns the number loaded.
 */
export async function indexPassages(client: SearchClient, name: string, passages: AsyncIterable<CorpusPassage> | Iterable<CorpusPassage>,
                                    options: IndexPassagesOptions = {}): Promise<number> {
  const api = new ClusterApi(client, detect(client, options.engine), 5);
  const batch = options.batch ?? 1000;
  if (!Number.isInteger(batch) || batch < 1) throw new InvalidArgumentError(`batch must be a positive integer, got ${String(options.batch)}`);
  let order = 0;
  let docs: Array<[number, Record<string, unknown>]> = [];
  const flush = async () => {
    let pending = docs;
    docs = [];
    for (let attempt = 0; pending.length; attempt++) {
      const ops = pending.flatMap(([n, d]) => [{ index: { _index: name, _id: String(n) } }, d]);
      const res = await api.call((p, o) => client.bulk(p, o), {}, ops, 'operations', options.signal) as { errors?: boolean; items?: Array<{ index?: { status?: number; error?: unknown } }> };
      if (!res?.errors) break;
      const again: Array<[number, Record<string, unknown>]> = [];
      (res.items ?? []).forEach((item, j) => {
        const st = item.index?.status ?? 0;
        if (st === 429 && attempt < 5) again.push(pending[j]!);
        else if (st >= 300) throw new CorpusError(`refused passage ${String(pending[j]![1].id)}: ${JSON.stringify(item.index?.error).slice(0, 300)}`, name);
      });
      pending = again;
      if (pending.length) await sleep(100 * 2 ** attempt, options.signal);
    }
    options.onProgress?.(order);
  };
  for await (const p of passages) {
    const doc: Record<string, unknown> = { id: p.id, text: p.text, source: p.source, order, contents: p.title !== undefined ? `${p.title}\n${p.text}` : p.text };
    if (p.title !== undefined) doc.title = p.title;
    docs.push([order++, doc]);
    if (docs.length === batch) await flush();
  }
  if (docs.length) await flush();
  await api.call((p, o) => client.indices.refresh(p, o), { index: name }, undefined, 'body', options.signal);
  if (options.forceMerge ?? true) await api.call((p, o) => client.indices.forcemerge(p, o), { index: name, max_num_segments: 1 }, undefined, 'body', options.signal);
  return order;
}

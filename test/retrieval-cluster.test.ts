/**
 * Elasticsearch and OpenSearch behind the Retriever interface. No cluster can run on the machines
 * CI uses, so:
 *
 * - the wiring tests run each real client against its HTTP-layer mock (@elastic/elasticsearch-mock
 *   for client 9, @short.io/opensearch-mock for client 3): the index settings and mappings sent,
 *   the query bodies, the search type, hits mapped to passages, _msearch, 429 retries (and none on
 *   top of the client's own 5xx retries), abort, bulk loading. The mocks answer with canned hits;
 *   nothing here scores, and no fake server is built on our own scorer.
 * - the scoring itself is Lucene's, proved by the Lucene goldens (retrieval-lucene.test.ts);
 * - live tests run the goldens against a real cluster when JAMBA_TEST_ES_URL or
 *   JAMBA_TEST_OPENSEARCH_URL is set, and are reported as skipped otherwise.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Client as EsClient, errors as esErrors } from '@elastic/elasticsearch';
import EsMock from '@elastic/elasticsearch-mock';
import { Client as OsClient, errors as osErrors } from '@opensearch-project/opensearch';
import OsMock from '@short.io/opensearch-mock';
import {
  AbortError, ClusterRetriever, CorpusError, ElasticsearchRetriever, InvalidArgumentError, OpenSearchRetriever, SearchClient, analyze, createRalmIndex,
  indexPassages,
} from '../lib';
import { FIXTURES } from './helpers/paths';

interface MockParams {
  method: string;
  path: string;
  body?: unknown;
  querystring?: Record<string, string>;
}
interface AnyMock {
  add(pattern: { method: string | string[]; path: string | string[] }, resolver: (p: MockParams) => unknown): unknown;
  clearAll(): unknown;
}

const engines = [
  {
    name: 'Elasticsearch',
    make: () => {
      const mock = new EsMock() as unknown as AnyMock;
      // maxRetries 2: the client's own retries of 502/503/504, which must not be multiplied.
      const client = new EsClient({ node: 'http://localhost:9200', Connection: (mock as unknown as EsMock).getConnection(), maxRetries: 2 }) as unknown as SearchClient;
      return { mock, client, retriever: (o = {}) => new ElasticsearchRetriever(client, 'wiki', o) };
    },
    error: (status: number, headers: Record<string, string> = {}) => new esErrors.ResponseError({ body: { error: { type: 'x' }, status }, statusCode: status, headers, warnings: null, meta: {} as never }),
  },
  {
    name: 'OpenSearch',
    make: () => {
      const mock = new OsMock() as unknown as AnyMock;
      const client = new OsClient({ node: 'http://localhost:9200', Connection: (mock as unknown as OsMock).getConnection(), maxRetries: 2 }) as unknown as SearchClient;
      return { mock, client, retriever: (o = {}) => new OpenSearchRetriever(client, 'wiki', o) };
    },
    error: (status: number, headers: Record<string, string> = {}) => new osErrors.ResponseError({ body: { error: { type: 'x' }, status }, statusCode: status, headers, warnings: null, meta: {} as never }),
  },
];

/** Registers one route whose answer the test can change (a mock keeps the first resolver of a route). */
function route(mock: AnyMock, method: string | string[], p: string): (r: (p: MockParams) => unknown) => void {
  let resolver: (p: MockParams) => unknown = () => ({});
  mock.add({ method, path: p }, (x) => resolver(x));
  return (r) => { resolver = r; };
}

const hit = (order: number, score: number, title?: string) => ({
  _id: String(order), _score: score, sort: [score, order],
  _source: { id: `p${order}`, text: `text ${order}`, source: 'corpus.jsonl', order, ...(title ? { title } : {}) },
});
const oneShard = { wiki: { settings: { index: { number_of_shards: '1' } } } };

describe.each(engines)('$name', ({ make, error }) => {
  test('wiring: createRalmIndex writes the english analyzer, BM25(0.9, 0.4), one contents field and one shard', async () => {
    const { mock, client } = make();
    const sent: MockParams[] = [];
    mock.add({ method: 'PUT', path: '/:index' }, (p) => (sent.push(p), { acknowledged: true }));
    await createRalmIndex(client, 'wiki');
    await createRalmIndex(client, 'wiki3', { shards: 3, replicas: 0 });
    expect(sent.map((p) => p.path)).toEqual(['/wiki', '/wiki3']);
    const body = sent[0]!.body as { settings: Record<string, unknown>; mappings: { properties: Record<string, unknown>; _source: unknown } };
    expect(body.settings).toEqual({ number_of_shards: 1, similarity: { pyserini_bm25: { type: 'BM25', k1: 0.9, b: 0.4 } } });
    expect(body.mappings.properties.contents).toEqual({ type: 'text', analyzer: 'english', similarity: 'pyserini_bm25', index_options: 'freqs' });
    expect(body.mappings.properties.order).toEqual({ type: 'long' });
    expect(body.mappings._source).toEqual({ excludes: ['contents'] });
    expect((sent[1]!.body as { settings: Record<string, unknown> }).settings).toMatchObject({ number_of_shards: 3, number_of_replicas: 0 });
    await expect(createRalmIndex(client, 'x', { shards: 0 })).rejects.toThrow(InvalidArgumentError);
  });

  test("wiring: a query is Pyserini's bag of words, sorted by score then passage order; hits become passages", async () => {
    const { mock, retriever } = make();
    const bodies: unknown[] = [];
    mock.add({ method: 'GET', path: '/:index' }, () => oneShard);
    const search = route(mock, ['GET', 'POST'], '/:index/_search');
    search((p) => (bodies.push({ qs: p.querystring, body: p.body }), { hits: { hits: [hit(4, 7.5, 'Four'), hit(9, 7.5)] } }));
    const r = retriever();
    const q = "The cats' cats and a running dog";
    const got = await r.retrieve(q, 2);
    const terms = analyze(q);
    expect(terms).toEqual(['cat', 'cat', 'run', 'dog']);
    expect(bodies).toEqual([{
      qs: {},
      body: {
        query: { bool: { should: [{ term: { contents: { value: 'cat', boost: 2 } } }, { term: { contents: { value: 'run', boost: 1 } } }, { term: { contents: { value: 'dog', boost: 1 } } }] } },
        size: 2, sort: [{ _score: 'desc' }, { order: 'asc' }], track_scores: true, track_total_hits: false,
      },
    }]);
    expect(got).toEqual([
      { id: 'p4', title: 'Four', text: 'text 4', score: 7.5, metadata: { source: 'corpus.jsonl', index: 'wiki' } },
      { id: 'p9', text: 'text 9', score: 7.5, metadata: { source: 'corpus.jsonl', index: 'wiki' } },
    ]);
    // Nothing left after analysis: no request at all.
    expect(await r.retrieve('the and of', 3)).toEqual([]);
    expect(bodies).toHaveLength(1);
    search(() => ({ hits: { hits: [{ _id: '1', _score: 1, _source: { title: 'no text' } }] } }));
    await expect(r.retrieve('cat', 1)).rejects.toThrow(CorpusError);
  });

  test('wiring: more than one shard makes every search dfs_query_then_fetch', async () => {
    const { mock, retriever } = make();
    const qs: unknown[] = [];
    mock.add({ method: 'GET', path: '/:index' }, () => ({ wiki: { settings: { index: { number_of_shards: '4' } } } }));
    mock.add({ method: ['GET', 'POST'], path: '/:index/_search' }, (p) => (qs.push(p.querystring), { hits: { hits: [] } }));
    mock.add({ method: ['GET', 'POST'], path: '/_msearch' }, (p) => (qs.push((p.body as unknown[])[0]), { responses: [{ hits: { hits: [] } }, { hits: { hits: [] } }] }));
    const r = retriever();
    await r.retrieve('cat', 1);
    await r.retrieveMany(['cat', 'dog'], 1);
    expect(qs).toEqual([{ search_type: 'dfs_query_then_fetch' }, { index: 'wiki', search_type: 'dfs_query_then_fetch' }]);
  });

  test('wiring: retrieveMany is one _msearch; searches refused with 429 are asked again, the others kept', async () => {
    const { mock, retriever } = make();
    mock.add({ method: 'GET', path: '/:index' }, () => oneShard);
    const calls: unknown[][] = [];
    const msearch = route(mock, ['GET', 'POST'], '/_msearch');
    msearch((p) => {
      const lines = p.body as Array<{ query?: { bool: { should: Array<{ term: { contents: { value: string } } }> } } }>;
      calls.push(lines.filter((_, i) => i % 2).map((b) => b.query!.bool.should[0]!.term.contents.value));
      if (calls.length === 1) return { responses: [{ hits: { hits: [hit(1, 3)] } }, { status: 429, error: { type: 'es_rejected_execution_exception' } }, { hits: { hits: [] } }] };
      return { responses: [{ hits: { hits: [hit(2, 2)] } }] };
    });
    const got = await retriever().retrieveMany(['cat', 'dog', 'bird', 'the'], 1);
    expect(calls).toEqual([['cat', 'dog', 'bird'], ['dog']]);
    expect(got.map((ps) => ps.map((p) => p.id))).toEqual([['p1'], ['p2'], [], []]);
    msearch(() => ({ responses: [{ hits: { hits: [] } }, { status: 400, error: { type: 'parse_exception' } }] }));
    await expect(retriever().retrieveMany(['cat', 'dog'], 1)).rejects.toThrow(/wiki: refused a search: .*parse_exception/);
  });

  test('wiring: 429 is retried with backoff (Retry-After honoured); 5xx is left to the client, which retries it itself, and 400 is not retried', async () => {
    const { mock, retriever } = make();
    mock.add({ method: 'GET', path: '/:index' }, () => oneShard);
    let n = 0;
    const search = route(mock, ['GET', 'POST'], '/:index/_search');
    search(() => (++n <= 2 ? error(429, { 'retry-after': '0' }) : { hits: { hits: [hit(3, 1)] } }));
    expect((await retriever().retrieve('cat', 1)).map((p) => p.id)).toEqual(['p3']);
    expect(n).toBe(3);
    n = 0;
    search(() => (++n, error(503)));
    await expect(retriever().retrieve('cat', 1)).rejects.toMatchObject({ meta: { statusCode: 503 } });
    expect(n).toBe(3);  // the client's first try and its 2 retries: no more from us
    n = 0;
    search(() => (++n, error(429)));
    await expect(retriever({ retries429: 1 }).retrieve('cat', 1)).rejects.toMatchObject({ meta: { statusCode: 429 } });
    expect(n).toBe(2);
    n = 0;
    search(() => (++n, error(400)));
    await expect(retriever().retrieve('cat', 1)).rejects.toMatchObject({ meta: { statusCode: 400 } });
    expect(n).toBe(1);
  });

  test('wiring: the AbortSignal stops a search in flight and a 429 backoff', async () => {
    const { mock, retriever } = make();
    mock.add({ method: 'GET', path: '/:index' }, () => oneShard);
    const search = route(mock, ['GET', 'POST'], '/:index/_search');
    search(() => ({ hits: { hits: [hit(1, 1)] } }));
    const r = retriever();
    await r.retrieve('warm', 1);  // the shard count is read once
    const ac = new AbortController();
    const p = r.retrieve('cat', 1, { signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toThrow(AbortError);
    await expect(r.retrieve('cat', 1, { signal: AbortSignal.abort() })).rejects.toThrow(AbortError);
    search(() => error(429, { 'retry-after': '30' }));
    const slow = new AbortController();
    const waiting = r.retrieve('cat', 1, { signal: slow.signal });
    setTimeout(() => slow.abort(), 50);
    const t0 = Date.now();
    await expect(waiting).rejects.toThrow(AbortError);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  test('wiring: indexPassages bulk-loads in corpus order (contents = title, newline, text), re-sends 429 items, refreshes and merges', async () => {
    const { mock, client } = make();
    const ops: unknown[][] = [];
    const paths: string[] = [];
    mock.add({ method: ['POST', 'PUT'], path: '/_bulk' }, (p) => {
      const lines = p.body as Array<Record<string, unknown>>;
      ops.push(lines);
      const items = lines.filter((_, i) => i % 2 === 0).map((_, j) => ({ index: { status: ops.length === 1 && j === 1 ? 429 : 201 } }));
      return { errors: items.some((i) => i.index.status !== 201), items };
    });
    mock.add({ method: ['POST', 'GET'], path: '/:index/_refresh' }, (p) => (paths.push(p.path), { _shards: {} }));
    mock.add({ method: 'POST', path: '/:index/_forcemerge' }, (p) => (paths.push(`${p.path}?${new URLSearchParams(p.querystring).toString()}`), { _shards: {} }));
    const passages = [{ id: 'a', title: 'A', text: 'alpha', source: 'f' }, { id: 'b', text: 'beta', source: 'f' }, { id: 'c', text: 'gamma', source: 'g' }];
    const progress: number[] = [];
    expect(await indexPassages(client, 'wiki', passages, { batch: 2, onProgress: (d) => progress.push(d) })).toBe(3);
    expect(ops[0]).toEqual([
      { index: { _index: 'wiki', _id: '0' } }, { id: 'a', title: 'A', text: 'alpha', source: 'f', order: 0, contents: 'A\nalpha' },
      { index: { _index: 'wiki', _id: '1' } }, { id: 'b', text: 'beta', source: 'f', order: 1, contents: 'beta' },
    ]);
    expect(ops[1]).toEqual([{ index: { _index: 'wiki', _id: '1' } }, { id: 'b', text: 'beta', source: 'f', order: 1, contents: 'beta' }]);
    expect(ops[2]).toEqual([{ index: { _index: 'wiki', _id: '2' } }, { id: 'c', text: 'gamma', source: 'g', order: 2, contents: 'gamma' }]);
    expect(progress).toEqual([2, 3]);
    expect(paths).toEqual(['/wiki/_refresh', '/wiki/_forcemerge?max_num_segments=1']);
  });

  test('wiring: bad arguments are refused by name', () => {
    const { client } = make();
    expect(() => new ClusterRetriever(client, '')).toThrow(/index must be a non-empty string/);
    expect(() => new ClusterRetriever({} as SearchClient, 'wiki')).toThrow(/client must be an @elastic\/elasticsearch or @opensearch-project\/opensearch Client/);
    expect(() => new ClusterRetriever(client, 'wiki', { retries429: -1 })).toThrow(/retries429/);
  });
});

test('the engine is told from the client: only the Elasticsearch client has eql', () => {
  const [es, os] = engines.map((e) => e.make().client);
  expect(new ClusterRetriever(es!, 'x').engine).toBe('elasticsearch');
  expect(new ClusterRetriever(os!, 'x').engine).toBe('opensearch');
});

/** The Lucene goldens against a real cluster: the same top 10, ids and float scores. */
async function liveGoldens(client: SearchClient, r: ClusterRetriever): Promise<void> {
  const dir = path.join(FIXTURES, 'retrieval');
  const unescape = (s: string) => s.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c === 't' ? '\t' : c));
  const tsv = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('\t')), unescape(l.slice(l.indexOf('\t') + 1))] as const);
  const name = r.index;
  await createRalmIndex(client, name);
  try {
    await indexPassages(client, name, tsv('corpus.tsv').map(([id, text]) => ({ id, text, source: 'corpus.tsv' })));
    const golden = fs.readFileSync(path.join(dir, 'lucene-top10.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { hits: Array<[string, number]> });
    const queries = tsv('queries.tsv');
    const got = await r.retrieveMany(queries.map(([, q]) => q), 10);
    queries.forEach(([qid], i) => {
      expect([qid, got[i]!.map((p) => p.id)]).toEqual([qid, golden[i]!.hits.map(([id]) => id)]);
      expect([qid, got[i]!.map((p) => p.score)]).toEqual([qid, golden[i]!.hits.map(([, s]) => Math.fround(s))]);
    });
  } finally {
    await (client as unknown as { indices: { delete(p: object): Promise<unknown> } }).indices.delete({ index: name });
  }
}

const esUrl = process.env.JAMBA_TEST_ES_URL, osUrl = process.env.JAMBA_TEST_OPENSEARCH_URL;
(esUrl ? test : test.skip)('live Elasticsearch (JAMBA_TEST_ES_URL): the Lucene goldens, ids and scores', async () => {
  const client = new EsClient({ node: esUrl! }) as unknown as SearchClient;
  await liveGoldens(client, new ElasticsearchRetriever(client, `jamba-goldens-${process.pid}`));
}, 300_000);
(osUrl ? test : test.skip)('live OpenSearch (JAMBA_TEST_OPENSEARCH_URL): the Lucene goldens, ids and scores', async () => {
  const client = new OsClient({ node: osUrl! }) as unknown as SearchClient;
  await liveGoldens(client, new OpenSearchRetriever(client, `jamba-goldens-${process.pid}`));
}, 300_000);

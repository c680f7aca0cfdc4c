/**
 * In-Context RALM on the embedded model: generation with retrieval against generation from the
 * passage prepended by hand, re-retrieval every `stride` tokens, context truncation, passage-state
 * reuse, zero-shot reranking, the evaluation protocol, the CLI and the server.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Bm25Retriever, InvalidArgumentError, JambaModel, Passage, Retriever, countWords, createServer, loadModel, ralmPerplexity, ralmWindows, windowedNll } from '../lib';
import { argmax } from '../lib/sampling';
import { packageVersion } from '../lib/paths';
import { retrievalNative } from '../lib/retrieval/native-index';
import { CORPUS, EMBEDDED } from './helpers/paths';

let model: JambaModel;
let tmp: string;
beforeAll(async () => {
  model = await loadModel(EMBEDDED);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-ralm-'));
});
afterAll(async () => {
  await model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const BOS = 1;
const enc = (t: string) => model.tokenizer.encode(t, { addSpecialTokens: false });
const P1: Passage = { id: 'p1', text: 'KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer by this sun of York;' };
const P2: Passage = { id: 'p2', text: 'JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name;' };

/** A retriever that answers from a list, in turn, and records the queries. */
function scripted(passages: Passage[][]): Retriever & { queries: string[] } {
  const queries: string[] = [];
  return {
    queries,
    async retrieve(q: string, k: number) {
      queries.push(q);
      return passages[(queries.length - 1) % passages.length]!.slice(0, k);
    },
  };
}

/** The greedy next token after `ids`, computed from scratch. */
async function greedyAfter(ids: number[]): Promise<number> {
  const V = model.config.vocabSize;
  const logits = await model.logits(ids);
  return argmax(logits.subarray((ids.length - 1) * V));
}

describe('generation with retrieval', () => {
  test('with one passage it equals generating after the passage prepended by hand', async () => {
    const prompt = await model.tokenizer.encode('GLOUCESTER:\nI');
    const manual = [BOS, ...(await enc(P1.text)), ...(await enc('\n')), ...prompt.slice(1)];
    for (const o of [{ temperature: 0 }, { temperature: 0.9, topK: 40, seed: 4 }]) {
      const want = await model.complete(manual, { maxTokens: 30, ...o });
      for (const stride of [4, 1000]) {
        const got = await model.complete(prompt, { maxTokens: 30, ...o, retrieval: { retriever: scripted([[P1]]), stride } });
        expect(got.tokens).toEqual(want.tokens);
        // The text is the continuation of the prompt, not of the passage.
        expect(got.text).toBe(model.tokenizer.decode([...prompt, ...got.tokens]).slice(model.tokenizer.decode(prompt).length));
        expect(got.retrievals!.length).toBe(stride === 4 ? Math.ceil(30 / 4) : 1);
        expect(got.retrievals!.slice(1).every((r) => r.kept)).toBe(true);
      }
    }
  });

  test('every stride tokens the query is the prefix\'s last tokens and a new passage replaces the old one', async () => {
    const prompt = await model.tokenizer.encode('ROMEO:\nShall I');
    const retriever = scripted([[P1], [P2]]);
    const stride = 3, queryTokens = 5;
    const r = await model.complete(prompt, { maxTokens: 13, temperature: 0, retrieval: { retriever, stride, queryTokens } });
    expect(r.tokens).toHaveLength(13);
    const prefix = [...prompt.slice(1), ...r.tokens];
    expect(r.retrievals!.map((x) => x.atToken)).toEqual([0, 3, 6, 9, 12]);
    expect(r.retrievals!.map((x) => x.passage!.id)).toEqual(['p1', 'p2', 'p1', 'p2', 'p1']);
    // Returning to a passage restores the state left with it and evaluates only what came since.
    expect(r.retrievals!.slice(2).every((x) => x.cachedState)).toBe(true);
    r.retrievals!.forEach((x, j) => {
      expect(x.query).toBe(model.tokenizer.decode(prefix.slice(0, prompt.length - 1 + x.atToken).slice(-queryTokens)));
      expect(retriever.queries[j]).toBe(x.query);
    });
    // Each token is the greedy choice after [BOS; the passage in front; separator; the prefix so far].
    const sep = await enc('\n');
    for (let j = 0; j < r.tokens.length; j++) {
      const p = r.retrievals![Math.floor(j / stride)]!.passage!;
      const input = [BOS, ...(await enc(p.text)), ...sep, ...prefix.slice(0, prompt.length - 1 + j)];
      expect(r.tokens[j]).toBe(await greedyAfter(input));
    }
  });

  test('passage plus prefix are cut to maxContextTokens from the start of the prefix; passages to maxPassageTokens', async () => {
    const prompt = await model.tokenizer.encode('MENENIUS:\nThere was a time when all the body\'s members\nRebell\'d against the belly');
    const maxContextTokens = 30, maxPassageTokens = 12;
    const r = await model.complete(prompt, { maxTokens: 10, temperature: 0, retrieval: { retriever: scripted([[P2]]), stride: 4, maxContextTokens, maxPassageTokens } });
    const head = [BOS, ...(await enc(P2.text)).slice(0, maxPassageTokens), ...(await enc('\n'))];
    const prefix = [...prompt.slice(1), ...r.tokens];
    for (let j = 0; j < r.tokens.length; j++) {
      // A kept passage lets the window grow until it is full; then the window is rebuilt.
      const seen = prefix.slice(0, prompt.length - 1 + j);
      const start = r.retrievals!.filter((x) => x.atToken <= j && !x.kept).at(-1)!.atToken;
      const body = seen.slice(Math.max(0, prompt.length - 1 + start - (maxContextTokens - head.length)));
      expect(r.tokens[j]).toBe(await greedyAfter([...head, ...body]));
      expect(head.length + body.length).toBeLessThanOrEqual(maxContextTokens);
    }
  });

  test('a passage retrieved again restores its cached state; the result is the same', async () => {
    model.clearPrefixCache();
    const P3: Passage = { id: 'p3', text: 'A passage seen for the first time in this test.' };
    const a = await model.complete('KING:\nGo', { maxTokens: 6, temperature: 0, retrieval: { retriever: scripted([[P3]]) } });
    const b = await model.complete('KING:\nGo', { maxTokens: 6, temperature: 0, retrieval: { retriever: scripted([[P3]]) } });
    expect(a.retrievals![0]!.cachedState).toBe(false);
    expect(b.retrievals![0]!.cachedState).toBe(true);
    expect(b.tokens).toEqual(a.tokens);
  });

  test('no passage found: generation goes on from the prompt alone', async () => {
    const plain = await model.complete('KING:\nGo', { maxTokens: 8, temperature: 0 });
    const r = await model.complete('KING:\nGo', { maxTokens: 8, temperature: 0, retrieval: { retriever: scripted([[]]) } });
    expect(r.tokens).toEqual(plain.tokens);
    expect(r.retrievals!.every((x) => x.passage === null)).toBe(true);
  });

  test('bad retrieval options and misbehaving retrievers are refused by name', async () => {
    const bad: Array<[unknown, RegExp]> = [
      [{}, /retrieval.retriever must have a retrieve/],
      [{ retriever: scripted([[P1]]), stride: 0 }, /retrieval.stride must be an integer ≥ 1/],
      [{ retriever: scripted([[P1]]), queryTokens: 1.5 }, /retrieval.queryTokens/],
      [{ retriever: scripted([[P1]]), maxPassageTokens: 300, maxContextTokens: 100 }, /leaves no room for the prefix/],
      [{ retriever: scripted([[P1]]), rerank: 'yes' }, /retrieval.rerank must be a boolean or an object/],
      [{ retriever: { retrieve: async () => [{ id: 3 }] } }, /must return an array of passages/],
    ];
    for (const [retrieval, msg] of bad)
      await expect(model.complete('A', { maxTokens: 2, retrieval: retrieval as never })).rejects.toThrow(msg);
    await expect(model.complete('A', { retrieval: { retriever: scripted([[P1]]) }, inputsEmbeds: model.embeddings([5]) })).rejects.toThrow(InvalidArgumentError);
    const failing: Retriever = { retrieve: async () => { throw new Error('index offline'); } };
    await expect(model.complete('A', { retrieval: { retriever: failing } })).rejects.toThrow('index offline');
    expect((await model.complete('A', { maxTokens: 2, temperature: 0 })).tokens).toHaveLength(2);
  });
});

describe('retrieval for several sequences at once', () => {
  const corpusTexts = fs.readFileSync(CORPUS, 'utf8').slice(0, 60_000);
  const prompts = ['ROMEO:\n', 'KING HENRY V:\nOnce more', 'First Citizen:\nWe are', 'JULIET:\nWhat', 'GLOUCESTER:\nNow', 'MENENIUS:\nWhy'];

  /** The BM25 retriever, counting its calls: `many` batches and `one` single queries. */
  async function counted(withMany: boolean) {
    const bm25 = await Bm25Retriever.fromTexts([corpusTexts], { chunk: { words: 60 } });
    const calls = { many: [] as number[], one: 0 };
    const r: Retriever = {
      retrieve: async (q, k, o) => (calls.one++, bm25.retrieve(q, k, o)),
      ...(withMany ? { retrieveMany: async (qs: string[], k: number, o?: { signal?: AbortSignal }) => (calls.many.push(qs.length), bm25.retrieveMany(qs, k, o)) } : {}),
    };
    return { r, calls };
  }

  test('completeBatch sends the sequences that reach a stride together as one retrieveMany, and generates what each would alone', async () => {
    const alone: number[][] = [];
    for (const p of prompts) {
      const { r } = await counted(false);
      alone.push((await model.complete(p, { maxTokens: 13, temperature: 0, retrieval: { retriever: r, stride: 4 } })).tokens);
    }
    const { r, calls } = await counted(true);
    const together = await model.completeBatch(prompts, { maxTokens: 13, temperature: 0, retrieval: { retriever: r, stride: 4 } });
    expect(together.map((x) => x.tokens)).toEqual(alone);
    // Retrievals at tokens 0, 4, 8 and 12 (while a sequence still runs). The first is everyone's,
    // before any pass; later strides are shared by the sequences still in step (a passage state
    // from the cache skips a prefill and can put a sequence ahead).
    expect(calls.one).toBe(0);
    const asks = together.reduce((n, x) => n + x.retrievals!.length, 0);
    expect(calls.many.reduce((a, b) => a + b, 0)).toBe(asks);
    expect(calls.many[0]).toBe(prompts.length);
    expect(calls.many.length).toBeLessThan(asks / 2);
    // Without retrieveMany, each sequence asks with retrieve, and the result is the same.
    const plain = await counted(false);
    expect((await model.completeBatch(prompts, { maxTokens: 13, temperature: 0, retrieval: { retriever: plain.r, stride: 4 } })).map((x) => x.tokens)).toEqual(alone);
    expect(plain.calls.one).toBe(calls.many.reduce((a, b) => a + b, 0));
  });

  test('one sequence aborted while its batch is retrieving leaves the others to finish as they would', async () => {
    const { r } = await counted(true);
    const slow: Retriever = {
      retrieve: r.retrieve,
      retrieveMany: async (qs, k, o) => {
        await new Promise((res) => setTimeout(res, 30));
        return r.retrieveMany!(qs, k, o);
      },
    };
    const ac = new AbortController();
    const runs = prompts.slice(0, 3).map((p, i) => model.complete(p, { maxTokens: 9, temperature: 0, signal: i === 1 ? ac.signal : undefined, retrieval: { retriever: slow, stride: 4 } }));
    setTimeout(() => ac.abort(), 10);
    const [a, b, c] = (await Promise.allSettled(runs)) as [PromiseSettledResult<{ tokens: number[] }>, PromiseSettledResult<unknown>, PromiseSettledResult<{ tokens: number[] }>];
    expect(b.status).toBe('rejected');
    const { r: fresh } = await counted(false);
    for (const [res, p] of [[a, prompts[0]!], [c, prompts[2]!]] as const) {
      expect(res.status).toBe('fulfilled');
      const want = await model.complete(p, { maxTokens: 9, temperature: 0, retrieval: { retriever: fresh, stride: 4 } });
      expect((res as PromiseFulfilledResult<{ tokens: number[] }>).value.tokens).toEqual(want.tokens);
    }
  });

  test('a retrieveMany that answers the wrong number of queries is refused by name', async () => {
    const bad: Retriever = { retrieve: async () => [P1], retrieveMany: async () => [[P1]] };
    await expect(model.completeBatch(prompts.slice(0, 2), { maxTokens: 4, retrieval: { retriever: bad } }))
      .rejects.toThrow(/retrieveMany\(\) must return one array of passages per query \(2\), got 1/);
  });
});

describe('zero-shot reranking', () => {
  test('the passage that predicts the prefix\'s last tokens best wins, with scores computed as defined', async () => {
    const prefixText = 'KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer';
    const prefix = await enc(prefixText);
    const noise: Passage = { id: 'noise', text: 'zq xv kk pp qq zz xx vv' };
    const ranked = await model.rerank([noise, P2, P1], prefix, { tokens: 8 });
    expect(ranked[0]!.passage.id).toBe('p1');
    const sep = await enc('\n');
    const target = prefix.slice(-8), before = prefix.slice(0, -8);
    for (const r of ranked) {
      const s = await model.score(target, { context: [BOS, ...(await enc(r.passage.text)), ...sep, ...before] });
      expect(r.score).toBeCloseTo(s.sum, 9);
    }
    expect(ranked[0]!.score).toBeGreaterThan(ranked[1]!.score);
    expect(ranked[1]!.score).toBeGreaterThanOrEqual(ranked[2]!.score);
  });

  test('generation reranks the retriever\'s candidates, also with another model as the reranker', async () => {
    const prompt = await model.tokenizer.encode('JULIET:\nO Romeo, Romeo! wherefore');
    const noise: Passage = { id: 'noise', text: 'zq xv kk pp qq zz xx vv' };
    const other = await loadModel(EMBEDDED);
    try {
      for (const rerank of [{ k: 2, tokens: 6 }, { k: 2, tokens: 6, model: other }]) {
        const r = await model.complete(prompt, { maxTokens: 4, temperature: 0, retrieval: { retriever: scripted([[noise, P2]]), stride: 8, rerank } });
        const first = r.retrievals![0]!;
        expect(first.passage!.id).toBe('p2');
        expect(first.candidates!.map((c) => c.passage.id)).toEqual(['p2', 'noise']);
        const manual = [BOS, ...(await enc(P2.text)), ...(await enc('\n')), ...prompt.slice(1)];
        expect(r.tokens).toEqual((await model.complete(manual, { maxTokens: 4, temperature: 0 })).tokens);
      }
    } finally {
      await other.dispose();
    }
  });
});

describe('evaluation under the RALM protocol', () => {
  let ids: number[];
  beforeAll(async () => {
    const text = fs.readFileSync(CORPUS, 'utf8').slice(0, 3000);
    ids = await enc(text);
  });

  test('windows slide by the stride and score every token exactly once', () => {
    for (const [n, w, s] of [[100, 32, 4], [33, 32, 4], [10, 32, 4], [101, 20, 7]] as const) {
      const ws = ralmWindows(n, w, s);
      expect(ws[0]).toEqual({ begin: 0, targetStart: 0, end: Math.min(n, w) });
      let covered = 0;
      for (const x of ws) {
        expect(x.targetStart).toBe(covered);
        expect(x.end - x.begin).toBeLessThanOrEqual(w);
        covered = x.end;
      }
      expect(covered).toBe(n);
    }
  });

  test('without retrieval, the NLL is that of each window scored from scratch', async () => {
    const opts = { window: 24, stride: 4, maxTokens: 60 };
    const r = await ralmPerplexity(model, ids, opts);
    let sum = 0, count = 0;
    for (const w of ralmWindows(60, 24, 4)) {
      const s = await model.score([BOS, ...ids.slice(w.begin, w.end)]);
      const scored = s.logprobs.slice(w.targetStart - w.begin);
      sum += scored.reduce((a, b) => a + b, 0);
      count += scored.length;
    }
    expect(r.tokens).toBe(60);
    expect(count).toBe(60);
    expect(r.nll).toBeCloseTo(-sum / count, 9);
    expect(r.retrievals).toBe(0);
  });

  test('with retrieval, later windows have the passage in place of their oldest tokens; the result is deterministic', async () => {
    const retriever = scripted([[P1], [P2]]);
    const opts = { window: 40, stride: 4, maxTokens: 56, maxPassageTokens: 10, queryTokens: 6, concurrency: 1 };
    const r = await ralmPerplexity(model, ids, { ...opts, retriever });
    const windows = ralmWindows(56, 40, 4);
    expect(r.retrievals).toBe(windows.length - 1);
    const sep = await enc('\n');
    let sum = 0;
    for (const [i, w] of windows.entries()) {
      let head = [BOS];
      if (i > 0) {
        expect(retriever.queries[i - 1]).toBe(model.tokenizer.decode(ids.slice(w.begin, w.targetStart).slice(-6)));
        head = [BOS, ...(await enc((i - 1) % 2 === 0 ? P1.text : P2.text)).slice(0, 10), ...sep];
      }
      const ctx = ids.slice(Math.min(w.targetStart, w.begin + head.length - 1), w.targetStart);
      const s = await model.score(ids.slice(w.targetStart, w.end), { context: [...head, ...ctx] });
      sum += s.sum;
    }
    expect(r.nll).toBeCloseTo(-sum / 56, 9);
    const again = await ralmPerplexity(model, ids, { ...opts, retriever: scripted([[P1], [P2]]), concurrency: 4 });
    expect(again.nll).toBe(r.nll);
  });

  test("the 'paper' layout is eval_lm.py's input: no BOS, the passage (title, newline, text) over the window's first tokens, no separator", async () => {
    const titled: Passage = { ...P2, title: '"Romeo and Juliet"' };
    const retriever = scripted([[P1], [titled]]);
    const opts = { window: 40, stride: 4, maxTokens: 56, maxPassageTokens: 10, queryTokens: 6, concurrency: 2, layout: 'paper' as const };
    const r = await ralmPerplexity(model, ids, { ...opts, retriever });
    const windows = ralmWindows(56, 40, 4);
    let sum = 0, count = 0;
    for (const [i, w] of windows.entries()) {
      let input = ids.slice(w.begin, w.end);
      if (i > 0) {
        const doc = (await enc((i - 1) % 2 === 0 ? P1.text : `${titled.title}\n${titled.text}`)).slice(0, 10);
        input = [...doc, ...input.slice(doc.length)];
      }
      expect(input.length).toBe(w.end - w.begin);
      const s = await model.score(input);  // scores input[1..]; the targets are the window's last end − targetStart
      const scored = s.logprobs.slice(Math.max(0, w.targetStart - w.begin - 1));
      sum += scored.reduce((a, b) => a + b, 0);
      count += scored.length;
    }
    expect(r.layout).toBe('paper');
    expect(r.tokens).toBe(55);  // the first window's first token has no context
    expect(count).toBe(55);
    expect(r.nll).toBeCloseTo(-sum / count, 9);
    const plain = await ralmPerplexity(model, ids, { window: 40, stride: 4, maxTokens: 56, layout: 'paper' });
    const first = await model.score(ids.slice(0, 40));
    expect(plain.tokens).toBe(55);
    expect(plain.nll).not.toBe(r.nll);
    expect(first.logprobs).toHaveLength(39);
  });

  test('word-level perplexity is exp(Σ NLL / words), words counted as eval_lm.py counts them (spaces)', async () => {
    expect(countWords(' a  b\nc d ')).toBe(5);
    expect(countWords('no-spaces\there')).toBe(0);
    const text = 'KING RICHARD III:\nNow is the winter of our discontent, made glorious summer by this sun of York.\n';
    const tids = await enc(text);
    expect(countWords(text)).toBe(16);  // 'KING RICHARD III:' has two spaces, the line after it fourteen
    for (const layout of ['bos', 'paper'] as const) {
      const r = await ralmPerplexity(model, tids, { window: 12, stride: 4, text, layout });
      expect(r.words).toBe(16);
      expect(r.wordPerplexity).toBeCloseTo(Math.exp((r.nll * r.tokens) / 16), 9);
      expect(r.tokens).toBe(layout === 'bos' ? tids.length : tids.length - 1);
    }
    expect((await ralmPerplexity(model, tids, { window: 12 })).wordPerplexity).toBeUndefined();
    // windowedNll scores every token by default, the final partial window too.
    const w = await windowedNll(model, tids, { window: 10, text });
    expect(w.tokens).toBe(tids.length);
    expect(w.windows).toBe(Math.ceil(tids.length / 10));
    expect(w.wordPerplexity).toBeCloseTo(Math.exp((w.nll * w.tokens) / 16), 9);
    expect((await windowedNll(model, tids, { window: 10, fullWindowsOnly: true })).tokens).toBe(tids.length - (tids.length % 10));
  });

  test('excluded passages are never put in front, and are counted', async () => {
    const forbidden: Passage = { ...P1, id: 'f', title: '"Richard III"' };
    const retriever = scripted([[forbidden, P2, P1]]);
    const opts = { window: 40, stride: 4, maxTokens: 48, maxPassageTokens: 10, queryTokens: 6, concurrency: 1 };
    const r = await ralmPerplexity(model, ids, { ...opts, retriever, exclude: { titles: ['Richard III'] } });
    const only2 = await ralmPerplexity(model, ids, { ...opts, retriever: scripted([[P2]]) });
    expect(r.nll).toBe(only2.nll);
    expect(r.excluded).toBe(r.retrievals);
    expect(r.retrievals).toBe(ralmWindows(48, 40, 4).length - 1);
    const gen = await model.complete('ROMEO:\n', { maxTokens: 8, temperature: 0, retrieval: { retriever: scripted([[forbidden, P2]]), exclude: { ids: ['f'] } } });
    expect(gen.retrievals!.every((x) => x.passage!.id === 'p2' && x.excluded === 1)).toBe(true);
    await expect(model.complete('A', { retrieval: { retriever, exclude: { ids: 'f' as unknown as string[] } } })).rejects.toThrow(/retrieval.exclude.ids must be an array of strings/);
  });

  test('bad evaluation options are refused by name', async () => {
    await expect(ralmPerplexity(model, ids, { layout: 'other' as 'bos' })).rejects.toThrow(/layout must be 'bos' or 'paper'/);
    await expect(ralmPerplexity(model, ids, { text: 5 as unknown as string })).rejects.toThrow(/text must be a string/);
    await expect(ralmPerplexity(model, ids, { window: 1 })).rejects.toThrow(/window must be an integer ≥ 2/);
    await expect(ralmPerplexity(model, ids, { window: 16, retriever: scripted([[P1]]), maxPassageTokens: 14 })).rejects.toThrow(/must exceed maxPassageTokens/);
    await expect(ralmPerplexity(model, [5])).rejects.toThrow(/fewer than 2 tokens/);
    await expect(ralmPerplexity(model, [5, 99999])).rejects.toThrow(/ids\[1\] = 99999 is not a token id/);
  });
});

describe('CLI and server', () => {
  const cli = (...args: string[]) => execFileSync(process.execPath, [path.join(__dirname, '..', 'bin', 'jamba.js'), ...args], { encoding: 'utf8', timeout: 120000, stdio: ['ignore', 'pipe', 'pipe'] });

  test('jamba index, jamba ralm and jamba eval --ralm', async () => {
    const corpus = path.join(tmp, 'corpus');
    fs.mkdirSync(corpus);
    fs.writeFileSync(path.join(corpus, 'a.txt'), P1.text);
    fs.writeFileSync(path.join(corpus, 'b.txt'), P2.text);
    const index = path.join(tmp, 'corpus.bm25');
    cli('index', '--corpus', corpus, '--out', index, '--words', '20');
    expect((await Bm25Retriever.load(index)).size).toBe(2);
    // Built from dist/, the file still records the package's version.
    const reader = retrievalNative().openIndex(index);
    expect(JSON.parse(reader.info().meta)).toMatchObject({ writer: `jamba-node ${packageVersion()}` });
    reader.close();
    const out = JSON.parse(cli('ralm', '--corpus', index, '--json', '--max-tokens', '8', '--temperature', '0', '--stride', '4', 'JULIET:\nO Romeo')) as {
      tokens: number[]; retrievals: Array<{ passage: string; atToken: number }>;
    };
    expect(out.retrievals.map((r) => r.atToken)).toEqual([0, 4]);
    expect(out.retrievals[0]!.passage).toBe('corpus/b.txt#0');
    const lib = await model.complete('JULIET:\nO Romeo', { maxTokens: 8, temperature: 0, retrieval: { retriever: await Bm25Retriever.load(index), stride: 4 } });
    expect(out.tokens).toEqual(lib.tokens);

    const text = path.join(tmp, 'text.txt');
    fs.writeFileSync(text, 'KING RICHARD III:\nNow is the winter of our discontent, made glorious summer by this sun of York.\n');
    const ev = JSON.parse(cli('eval', '--ralm', '--corpus', corpus, '--window', '40', '--max-passage-tokens', '16', '--json', text)) as {
      withoutRetrieval: { nll: number; tokens: number }; withRetrieval: { nll: number; tokens: number; retrievals: number; words: number; wordPerplexity: number };
    };
    const textIds = await enc(fs.readFileSync(text, 'utf8'));
    const retriever = await Bm25Retriever.fromPath(corpus);
    const want = await ralmPerplexity(model, textIds, { window: 40, maxPassageTokens: 16, retriever, text: fs.readFileSync(text, 'utf8') });
    expect(ev.withRetrieval.nll).toBe(want.nll);
    expect(ev.withoutRetrieval.nll).toBe((await ralmPerplexity(model, textIds, { window: 40, maxPassageTokens: 16 })).nll);
    expect(ev.withRetrieval.tokens).toBe(textIds.length);
    // Word-level perplexity, both layouts, exclusion by title file, and an index with exact lengths.
    expect(ev.withRetrieval.words).toBe(countWords(fs.readFileSync(text, 'utf8')));
    expect(ev.withRetrieval.wordPerplexity).toBeCloseTo(want.wordPerplexity ?? Math.exp((want.nll * want.tokens) / ev.withRetrieval.words), 9);
    const titles = path.join(tmp, 'titles.txt');
    fs.writeFileSync(titles, 'nothing\n');
    const exact = path.join(tmp, 'exact.bm25');
    cli('index', '--corpus', corpus, '--out', exact, '--exact-lengths');
    const disk = await Bm25Retriever.load(exact);
    expect(disk.params.luceneNorms).toBe(false);
    const paper = JSON.parse(cli('eval', '--ralm', '--corpus', exact, '--window', '24', '--max-passage-tokens', '16', '--layout', 'paper',
      '--exclude-titles', titles, '--exclude-overlap', '--overlap-words', '8', '--json', text)) as {
      layout: string; withRetrieval: { nll: number; tokens: number; excluded: number; wordPerplexity: number };
    };
    const wantPaper = await ralmPerplexity(model, textIds, { window: 24, maxPassageTokens: 16, retriever: disk, layout: 'paper',
      text: fs.readFileSync(text, 'utf8'), exclude: { titles: ['nothing'], overlapText: fs.readFileSync(text, 'utf8'), overlapWords: 8 } });
    expect(paper.layout).toBe('paper');
    expect(paper.withRetrieval.nll).toBe(wantPaper.nll);
    expect(paper.withRetrieval.tokens).toBe(textIds.length - 1);
    expect(paper.withRetrieval.excluded).toBe(wantPaper.excluded);
    expect(wantPaper.excluded).toBeGreaterThan(0);  // P1's passage shares 8 words in a row with the text
    disk.close();
    const plainEval = JSON.parse(cli('eval', '--window', '10', '--json', text)) as { tokens: number; words: number; wordPerplexity: number };
    expect(plainEval.tokens).toBe(textIds.length);
    expect(plainEval.words).toBe(countWords(fs.readFileSync(text, 'utf8')));
    expect(() => cli('ralm', '--corpus', path.join(__dirname, '..', 'models', 'jamba-tiny-shakespeare', 'model.safetensors'), 'x'))
      .toThrow(/model.safetensors: is a binary file/);
  });

  test('the server retrieves from a named corpus and reports the passages', async () => {
    const app = await createServer({ model, corpora: { plays: Bm25Retriever.fromTexts([P1.text, P2.text]) } });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const post = (body: unknown) => fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    try {
      const res = await post({ prompt: 'JULIET:\nO Romeo', max_tokens: 6, temperature: 0, retrieval: { corpus: 'plays', stride: 3 } });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { choices: Array<{ text: string }>; retrievals: Array<{ at_token: number; passage: { id: string } }> };
      expect(body.retrievals.map((r) => [r.at_token, r.passage.id])).toEqual([[0, 'text[1]#0'], [3, 'text[1]#0']]);
      const lib = await model.complete('JULIET:\nO Romeo', { maxTokens: 6, temperature: 0, retrieval: { retriever: await Bm25Retriever.fromTexts([P1.text, P2.text]), stride: 3 } });
      expect(body.choices[0]!.text).toBe(lib.text);
      const stream = await (await post({ prompt: 'JULIET:', max_tokens: 4, stream: true, retrieval: {} })).text();
      expect(stream).toContain('"retrievals":[{"at_token":0');
      // The prompt matches both passages, P1 (sun, York) above P2 (Romeo); P1 excluded, P2 is used.
      const both = 'Romeo, the sun of York';
      expect((await (await Bm25Retriever.fromTexts([P1.text, P2.text])).retrieve(both, 2)).map((p) => p.id)).toEqual(['text[0]#0', 'text[1]#0']);
      const ex = (await (await post({ prompt: both, max_tokens: 2, temperature: 0, retrieval: { exclude: { ids: ['text[0]#0'] } } })).json()) as {
        retrievals: Array<{ passage: { id: string }; excluded: number }>;
      };
      expect(ex.retrievals[0]).toMatchObject({ passage: { id: 'text[1]#0' }, excluded: 1 });
      for (const [retrieval, param] of [[{ corpus: 'nope' }, 'retrieval.corpus'], [{ stride: 0 }, 'retrieval.stride'], [{ k: 3 }, 'retrieval.k'], ['x', 'retrieval'],
        [{ exclude: { titles: 'x' } }, 'retrieval.exclude.titles'], [{ exclude: { nope: 1 } }, 'retrieval.exclude.nope'], [{ exclude: [] }, 'retrieval.exclude']] as const) {
        const bad = await post({ prompt: 'A', retrieval });
        expect(bad.status).toBe(400);
        expect(((await bad.json()) as { error: { param: string } }).error.param).toBe(param);
      }
    } finally {
      await app.close();
    }
  });
});

/**
 * The OpenAI-compatible server end to end on loopback with the embedded model: results, streaming,
 * concurrency, disconnects, validation, admission control, health while loading, embedding.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import Fastify, { FastifyInstance } from 'fastify';
import { JambaModel, createServer, jambaPlugin, loadModel } from '../lib';
import { EMBEDDED, SHAKESPEARE_REF, SHARED } from './helpers/paths';

const greedyRef = (JSON.parse(fs.readFileSync(path.join(SHAKESPEARE_REF, 'reference.json'), 'utf8')) as {
  greedy: Record<string, { greedy_text: string }>;
}).greedy;
const template = fs.readFileSync(path.join(SHARED, 'fixtures', 'chat-template', 'jamba-1.7-mini.chat_template.jinja'), 'utf8');

let model: JambaModel;
let app: FastifyInstance;
let base: string;

async function start(opts: Parameters<typeof createServer>[0]): Promise<{ app: FastifyInstance; base: string }> {
  const a = await createServer(opts);
  await a.listen({ port: 0, host: '127.0.0.1' });
  return { app: a, base: `http://127.0.0.1:${(a.server.address() as AddressInfo).port}` };
}

const post = (url: string, body: unknown, init: RequestInit = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...init });

/** Parses an SSE body into its data payloads. */
function events(text: string): string[] {
  return text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

beforeAll(async () => {
  model = await loadModel(EMBEDDED);
  ({ app, base } = await start({ model, parallel: 16, queueSize: 64, chatTemplate: template }));
});
afterAll(async () => {
  await app.close();
  await model.dispose();
});

test('a completion equals the reference greedy continuation', async () => {
  for (const [prompt, g] of Object.entries(greedyRef)) {
    const r = await post(`${base}/v1/completions`, { model: 'jamba-tiny-shakespeare', prompt, max_tokens: 48, temperature: 0 });
    expect(r.status).toBe(200);
    const body = await r.json() as { object: string; choices: Array<{ text: string; finish_reason: string }>; usage: { completion_tokens: number; prompt_tokens: number; total_tokens: number } };
    expect(body.object).toBe('text_completion');
    expect(prompt + body.choices[0]!.text).toBe(g.greedy_text);
    expect(body.choices[0]!.finish_reason).toBe('length');
    expect(body.usage.completion_tokens).toBe(48);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + 48);
  }
});

test('streaming sends the same text as server-sent events ending in [DONE], with usage', async () => {
  const req = { prompt: 'ROMEO:\n', max_tokens: 48, temperature: 0 };
  const plain = await (await post(`${base}/v1/completions`, req)).json() as { choices: Array<{ text: string }> };
  const r = await post(`${base}/v1/completions`, { ...req, stream: true, stream_options: { include_usage: true } });
  expect(r.headers.get('content-type')).toMatch(/text\/event-stream/);
  const ev = events(await r.text());
  expect(ev[ev.length - 1]).toBe('[DONE]');
  const chunks = ev.slice(0, -1).map((e) => JSON.parse(e) as { choices: Array<{ text: string; finish_reason: string | null }>; usage?: { completion_tokens: number } });
  expect(chunks.map((c) => c.choices[0]?.text ?? '').join('')).toBe(plain.choices[0]!.text);
  expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('length');
  expect(chunks[chunks.length - 1]!.usage?.completion_tokens).toBe(48);
});

test('chat completions, plain and streamed', async () => {
  const messages = [{ role: 'user', content: 'Speak, speak.' }];
  const r = await post(`${base}/v1/chat/completions`, { messages, max_tokens: 12, temperature: 0 });
  expect(r.status).toBe(200);
  const body = await r.json() as { object: string; choices: Array<{ message: { role: string; content: string } }> };
  expect(body.object).toBe('chat.completion');
  expect(body.choices[0]!.message.role).toBe('assistant');
  const expected = (await model.complete(await model.tokenizer.encode(model.renderChat(messages, { chatTemplate: template }), { addSpecialTokens: false }), { maxTokens: 12, temperature: 0 })).text;
  expect(body.choices[0]!.message.content).toBe(expected);
  const s = await post(`${base}/v1/chat/completions`, { messages, max_tokens: 12, temperature: 0, stream: true });
  const chunks = events(await s.text()).slice(0, -1).map((e) => JSON.parse(e) as { object: string; choices: Array<{ delta: { role?: string; content?: string } }> });
  expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
  expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
  expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(expected);
});

test('16 concurrent requests each get their own correct result', async () => {
  const prompts = Array.from({ length: 16 }, (_, i) => ['ROMEO:\n', 'JULIET:\n', 'KING HENRY:\n', 'All:\n'][i % 4]! + 'x'.repeat(i % 3));
  const solo = await Promise.all(prompts.map(async (p) => (await model.complete(p, { maxTokens: 20, temperature: 0 })).text));
  const passesBefore = model.stats.passes;
  const rs = await Promise.all(prompts.map((prompt) => post(`${base}/v1/completions`, { prompt, max_tokens: 20, temperature: 0 })));
  const texts = await Promise.all(rs.map(async (r) => {
    expect(r.status).toBe(200);
    return ((await r.json()) as { choices: Array<{ text: string }> }).choices[0]!.text;
  }));
  expect(texts).toEqual(solo);
  expect(model.stats.passes - passesBefore).toBeLessThan(16 * 20);  // they shared forward passes
});

test('a client that disconnects aborts its generation, during decode and during prefill', async () => {
  const before = await metric(base, 'jamba_completion_tokens_total');
  const ac = new AbortController();
  const r = await post(`${base}/v1/completions`, { prompt: 'ROMEO:\n', max_tokens: 4000, temperature: 0.8, stream: true }, { signal: ac.signal });
  const reader = r.body!.getReader();
  await reader.read();
  ac.abort();
  await expect(reader.read()).rejects.toThrow();
  // A long prompt, dropped while it is being evaluated.
  const ac2 = new AbortController();
  const long = Array.from({ length: 20000 }, (_, i) => 10 + (i % 900));
  const p2 = post(`${base}/v1/completions`, { prompt: long, max_tokens: 10 }, { signal: ac2.signal });
  setTimeout(() => ac2.abort(), 30);
  await expect(p2).rejects.toThrow();
  for (let i = 0; i < 200 && (await metric(base, 'jamba_requests_active')) > 0; i++) await new Promise((res) => setTimeout(res, 10));
  expect(await metric(base, 'jamba_requests_active')).toBe(0);
  // Nothing was counted as generated for the aborted requests; far fewer than 4000 tokens ran.
  expect(await metric(base, 'jamba_completion_tokens_total')).toBe(before);
  expect((await (await fetch(`${base}/metrics`)).text())).toMatch(/jamba_requests_total\{endpoint="\/v1\/completions",status="499"\} 2/);
});

test.each([
  ['malformed JSON', '{"prompt": "x",', 400, 'invalid_json', null],
  ['a body that is not an object', '[1, 2]', 400, null, null],
  ['prompt of the wrong type', { prompt: 12 }, 400, 'invalid_value', 'prompt'],
  ['max_tokens of the wrong type', { prompt: 'x', max_tokens: 'ten' }, 400, 'invalid_value', 'max_tokens'],
  ['max_tokens out of range', { prompt: 'x', max_tokens: 1e9 }, 400, 'invalid_value', 'max_tokens'],
  ['temperature out of range', { prompt: 'x', temperature: 7 }, 400, 'invalid_value', 'temperature'],
  ['top_p zero', { prompt: 'x', top_p: 0 }, 400, 'invalid_value', 'top_p'],
  ['token ids past the vocabulary', { prompt: [1, 5000] }, 400, 'invalid_value', 'prompt'],
  ['stop of the wrong type', { prompt: 'x', stop: [3] }, 400, 'invalid_value', 'stop'],
  ['n > 1', { prompt: 'x', n: 3 }, 400, 'invalid_value', 'n'],
  ['stream not a boolean', { prompt: 'x', stream: 'yes' }, 400, 'invalid_value', 'stream'],
  ['unknown model', { prompt: 'x', model: 'gpt-4o' }, 404, 'model_not_found', 'model'],
])('%s is rejected with an OpenAI-shaped error', async (_n, body, status, code, param) => {
  const r = await post(`${base}/v1/completions`, body);
  expect(r.status).toBe(status);
  const e = await r.json() as { error: { message: string; type: string; code: string | null; param: string | null } };
  expect(typeof e.error.message).toBe('string');
  expect(e.error.type).toBe('invalid_request_error');
  if (code) expect(e.error.code).toBe(code);
  expect(e.error.param).toBe(param);
});

test('chat validation, oversized bodies and unknown routes', async () => {
  let r = await post(`${base}/v1/chat/completions`, { messages: [{ role: 'wizard', content: 'x' }] });
  expect(r.status).toBe(400);
  expect((await r.json() as { error: { param: string } }).error.param).toBe('messages[0].role');
  r = await post(`${base}/v1/completions`, { prompt: 'x'.repeat(2 * 2 ** 20) });
  expect(r.status).toBe(413);
  expect((await r.json() as { error: { code: string } }).error.code).toBe('body_too_large');
  r = await fetch(`${base}/v1/embeddings`);
  expect(r.status).toBe(404);
  expect((await r.json() as { error: { type: string } }).error.type).toBe('invalid_request_error');
  const models = await (await fetch(`${base}/v1/models`)).json() as { data: Array<{ id: string }> };
  expect(models.data.map((m) => m.id)).toEqual(['jamba-tiny-shakespeare']);
});

test('a full queue answers 429 instead of growing', async () => {
  const s = await start({ model, parallel: 1, queueSize: 1 });
  try {
    const ac = new AbortController();
    const slow = { prompt: 'ROMEO:\n', max_tokens: 3000, temperature: 0.8, stream: true };
    const a = await post(`${s.base}/v1/completions`, slow, { signal: ac.signal });  // running
    const b = post(`${s.base}/v1/completions`, slow, { signal: ac.signal });        // queued
    while ((await metric(s.base, 'jamba_queue_depth')) < 1) await new Promise((res) => setTimeout(res, 5));
    const c = await post(`${s.base}/v1/completions`, slow);
    expect(c.status).toBe(429);
    expect((await c.json() as { error: { type: string; code: string } }).error).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
    ac.abort();
    await a.body?.cancel().catch(() => undefined);
    await b.catch(() => undefined);
  } finally {
    await s.app.close();
  }
});

test('/health is 503 while the model loads, then 200', async () => {
  let resolve!: (m: JambaModel) => void;
  const pending = new Promise<JambaModel>((r) => (resolve = r));
  const s = await start({ model: pending });
  try {
    const h = await fetch(`${s.base}/health`);
    expect(h.status).toBe(503);
    expect(await h.json()).toEqual({ status: 'loading' });
    expect((await post(`${s.base}/v1/completions`, { prompt: 'x' })).status).toBe(503);
    resolve(model);
    await new Promise((res) => setImmediate(res));
    expect((await fetch(`${s.base}/health`)).status).toBe(200);
  } finally {
    await s.app.close();
  }
});

test('the routes mount inside an existing Fastify app', async () => {
  const host = Fastify();
  host.get('/', async () => ({ hello: 'world' }));
  await host.register(jambaPlugin, { model, prefix: '/ai' });
  await host.listen({ port: 0, host: '127.0.0.1' });
  try {
    const url = `http://127.0.0.1:${(host.server.address() as AddressInfo).port}`;
    expect(await (await fetch(`${url}/`)).json()).toEqual({ hello: 'world' });
    const r = await post(`${url}/ai/v1/completions`, { prompt: 'ROMEO:\n', max_tokens: 48, temperature: 0 });
    expect('ROMEO:\n' + ((await r.json()) as { choices: Array<{ text: string }> }).choices[0]!.text).toBe(greedyRef['ROMEO:\n']!.greedy_text);
  } finally {
    await host.close();
  }
});

test('a bounded load test: 200 requests at concurrency 16, no errors, memory stable', async () => {
  const run = async (n: number) => {
    let next = 0, errors = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < n) {
        const i = next++;
        const r = await post(`${base}/v1/completions`, { prompt: `ROMEO:\n${'ab'.repeat(i % 5)}`, max_tokens: 12, temperature: 0.7, seed: i, stream: i % 2 === 0 });
        if (r.status !== 200) errors++;
        await r.text();
      }
    }));
    return errors;
  };
  expect(await run(40)).toBe(0);  // warm-up
  const rss0 = process.memoryUsage().rss;
  expect(await run(200)).toBe(0);
  const grown = process.memoryUsage().rss - rss0;
  expect(grown).toBeLessThan(64 * 2 ** 20);
});

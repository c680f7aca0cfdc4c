/**
 * The OpenAI-compatible server end to end on loopback with the embedded model: results, streaming,
 * concurrency, disconnects, validation, admission control, health while loading, embedding.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import Fastify, { FastifyInstance } from 'fastify';
import { JambaModel, createServer, jambaPlugin, loadModel } from '../lib';
import { CHAT_TEMPLATES, EMBEDDED, SHAKESPEARE_REF } from './helpers/paths';

const greedyRef = (JSON.parse(fs.readFileSync(path.join(SHAKESPEARE_REF, 'reference.json'), 'utf8')) as {
  greedy: Record<string, { greedy_text: string }>;
}).greedy;
const template = fs.readFileSync(path.join(CHAT_TEMPLATES, 'jamba-1.7-mini.chat_template.jinja'), 'utf8');

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
  ['n past 16', { prompt: 'x', n: 17 }, 400, 'invalid_value', 'n'],
  ['best_of (defined, not implemented)', { prompt: 'x', best_of: 3 }, 400, 'invalid_value', 'best_of'],
  ['suffix (defined, not implemented)', { prompt: 'x', suffix: 'y' }, 400, 'invalid_value', 'suffix'],
  ['a field OpenAI does not define', { prompt: 'x', max_tokenz: 3 }, 400, 'invalid_value', 'max_tokenz'],
  ['a chat-only field on completions', { prompt: 'x', tools: [] }, 400, 'invalid_value', 'tools'],
  ['logit_bias past the vocabulary', { prompt: 'x', logit_bias: { 5000: 1 } }, 400, 'invalid_value', 'logit_bias'],
  ['logit_bias out of range', { prompt: 'x', logit_bias: { 5: 101 } }, 400, 'invalid_value', 'logit_bias'],
  ['presence_penalty out of range', { prompt: 'x', presence_penalty: 3 }, 400, 'invalid_value', 'presence_penalty'],
  ['response_format of an unknown type', { prompt: 'x', response_format: { type: 'xml' } }, 400, 'invalid_value', 'response_format'],
  ['a grammar that is not a string', { prompt: 'x', grammar: 5 }, 400, 'invalid_value', 'grammar'],
  ['user not a string', { prompt: 'x', user: 5 }, 400, 'invalid_value', 'user'],
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

test('every other OpenAI field works: n choices from one prefill, prompt lists, logit_bias, penalties, metadata', async () => {
  // n = 3 seeded: three different, reproducible choices; the prompt was evaluated once.
  const prompt = 'KING HENRY V:\nOnce more unto the breach';
  const before = model.stats.prefixCache.hits;
  const req = { prompt, max_tokens: 12, temperature: 1, seed: 7, n: 3, user: 'u1', metadata: { a: '1' }, store: false, service_tier: 'auto' };
  const a = await (await post(`${base}/v1/completions`, req)).json() as { choices: Array<{ index: number; text: string }>; usage: { prompt_tokens: number; completion_tokens: number } };
  expect(a.choices.map((c) => c.index)).toEqual([0, 1, 2]);
  expect(new Set(a.choices.map((c) => c.text)).size).toBe(3);
  expect(model.stats.prefixCache.hits - before).toBeGreaterThanOrEqual(3);
  const ids = await model.tokenizer.encode(prompt);
  expect(a.usage.prompt_tokens).toBe(ids.length);
  for (const [j, c] of a.choices.entries()) expect(c.text).toBe((await model.complete(prompt, { maxTokens: 12, temperature: 1, seed: 7 + j })).text);
  // Streamed, every choice's pieces carry its index and add up to the same texts.
  const ev = events(await (await post(`${base}/v1/completions`, { ...req, stream: true })).text()).slice(0, -1)
    .map((e) => JSON.parse(e) as { choices: Array<{ index: number; text: string }> });
  const texts = ['', '', ''];
  for (const e of ev) texts[e.choices[0]!.index] += e.choices[0]!.text;
  expect(texts).toEqual(a.choices.map((c) => c.text));
  // A list of prompts: choices prompt-major.
  const list = await (await post(`${base}/v1/completions`, { prompt: ['ROMEO:', 'JULIET:'], max_tokens: 6, temperature: 0, n: 2 })).json() as { choices: Array<{ index: number; text: string }> };
  const romeo = (await model.complete('ROMEO:', { maxTokens: 6, temperature: 0 })).text, juliet = (await model.complete('JULIET:', { maxTokens: 6, temperature: 0 })).text;
  expect(list.choices.map((c) => c.text)).toEqual([romeo, romeo, juliet, juliet]);
  // logit_bias: a token banned never appears; penalties change the greedy text as in the library.
  const greedy = await model.complete('ROMEO:\n', { maxTokens: 10, temperature: 0 });
  const banned = await (await post(`${base}/v1/completions`, { prompt: 'ROMEO:\n', max_tokens: 10, temperature: 0, logit_bias: { [greedy.tokens[0]!]: -100 } })).json() as { choices: Array<{ text: string }> };
  expect(banned.choices[0]!.text).toBe((await model.complete('ROMEO:\n', { maxTokens: 10, temperature: 0, logitBias: { [greedy.tokens[0]!]: -100 } })).text);
  expect(banned.choices[0]!.text).not.toBe(greedy.text);
  const pen = await (await post(`${base}/v1/completions`, { prompt: 'ROMEO:\n', max_tokens: 30, temperature: 0, presence_penalty: 1.5, frequency_penalty: 0.5 })).json() as { choices: Array<{ text: string }> };
  expect(pen.choices[0]!.text).toBe((await model.complete('ROMEO:\n', { maxTokens: 30, temperature: 0, presencePenalty: 1.5, frequencyPenalty: 0.5 })).text);
});

test('structured output and content-part arrays through the server', async () => {
  const schema = { type: 'object', additionalProperties: false, required: ['who', 'ok'], properties: { who: { enum: ['Romeo', 'Juliet'] }, ok: { type: 'boolean' } } };
  for (const url of ['/v1/completions', '/v1/chat/completions']) {
    const body = url.includes('chat') ? { messages: [{ role: 'user', content: [{ type: 'text', text: 'Who' }, { type: 'text', text: ' speaks?' }] }] } : { prompt: 'ROMEO:\n' };
    const r = await (await post(`${base}${url}`, { ...body, max_tokens: 40, temperature: 0.7, seed: 1, response_format: { type: 'json_schema', json_schema: { name: 'x', schema, strict: true } } })).json() as {
      choices: Array<{ text?: string; message?: { content: string }; finish_reason: string }>;
    };
    const out = JSON.parse(r.choices[0]!.text ?? r.choices[0]!.message!.content) as { who: string; ok: boolean };
    expect(['Romeo', 'Juliet']).toContain(out.who);
    expect(typeof out.ok).toBe('boolean');
    expect(r.choices[0]!.finish_reason).toBe('stop');
  }
  const g = await (await post(`${base}/v1/completions`, { prompt: 'A', max_tokens: 10, grammar: 'root ::= "yea" | "nay"' })).json() as { choices: Array<{ text: string }> };
  expect(['yea', 'nay']).toContain(g.choices[0]!.text);
  const bad = await post(`${base}/v1/chat/completions`, { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] });
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as { error: { param: string } }).error.param).toBe('messages[0].content[0].type');
  for (const [field, value] of [['tool_choice', 'required'], ['reasoning_effort', 'low'], ['audio', {}]] as const) {
    const r = await post(`${base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }], [field]: value });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { param: string } }).error.param).toBe(field);
  }
});

test('logprobs: token strings keep their spaces and bytes, offsets point into the returned text, streamed or not', async () => {
  const req = { prompt: 'ROMEO:\nWhat', max_tokens: 20, temperature: 0, logprobs: 2, echo: true };
  type Lp = { tokens: string[]; token_logprobs: number[]; top_logprobs: Array<Record<string, number>>; text_offset: number[] };
  const r = await (await post(`${base}/v1/completions`, req)).json() as { choices: Array<{ text: string; logprobs: Lp }> };
  const { text, logprobs } = r.choices[0]!;
  const echo = model.tokenizer.decode(await model.tokenizer.encode('ROMEO:\nWhat'));
  expect(logprobs.text_offset[0]).toBe(echo.length);
  logprobs.tokens.forEach((t, i) => expect(text.slice(logprobs.text_offset[i], logprobs.text_offset[i]! + t.length)).toBe(t));
  expect(logprobs.tokens.join('')).toBe(text.slice(echo.length));
  expect(logprobs.tokens.some((t) => t.startsWith(' '))).toBe(true);
  // Streamed: the same tokens and offsets, spread over the chunks.
  const ev = events(await (await post(`${base}/v1/completions`, { ...req, stream: true })).text()).slice(0, -1)
    .map((e) => JSON.parse(e) as { choices: Array<{ logprobs: Lp | null }> });
  const streamed = ev.flatMap((e) => e.choices[0]!.logprobs?.tokens ?? []), offsets = ev.flatMap((e) => e.choices[0]!.logprobs?.text_offset ?? []);
  expect(streamed).toEqual(logprobs.tokens);
  expect(offsets).toEqual(logprobs.text_offset);
  // Chat: bytes are the token's own, a space included.
  type ChatLp = { content: Array<{ token: string; bytes: number[]; logprob: number; top_logprobs: Array<{ token: string }> }> };
  const c = await (await post(`${base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'Speak' }], max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 2 })).json() as {
    choices: Array<{ message: { content: string }; logprobs: ChatLp }>;
  };
  const content = c.choices[0]!.logprobs.content;
  expect(content.map((x) => x.token).join('')).toBe(c.choices[0]!.message.content);
  for (const x of content) expect(Buffer.from(x.bytes).toString('utf8')).toBe(x.token);
  expect(content.every((x) => x.top_logprobs.length === 2)).toBe(true);
  const cs = events(await (await post(`${base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'Speak' }], max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 2, stream: true })).text())
    .slice(0, -1).map((e) => JSON.parse(e) as { choices: Array<{ logprobs: ChatLp | null }> });
  expect(cs.flatMap((e) => e.choices[0]?.logprobs?.content ?? [])).toEqual(content);
});

test('limits a served model needs: the context window, CORS', async () => {
  const short = await loadModel(EMBEDDED, { contextLength: 64 });
  const small = await start({ model: short, cors: 'https://example.org' });
  try {
    const ids = await model.tokenizer.encode('ROMEO:');
    const over = await post(`${small.base}/v1/completions`, { prompt: 'ROMEO:', max_tokens: 65 - ids.length });
    expect(over.status).toBe(400);
    expect(((await over.json()) as { error: { code: string; param: string } }).error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
    expect((await post(`${small.base}/v1/completions`, { prompt: 'ROMEO:', max_tokens: 64 - ids.length })).status).toBe(200);
    // CORS: the header on answers, and a preflight.
    const pre = await fetch(`${small.base}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'https://example.org', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('https://example.org');
    expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
    expect((await fetch(`${small.base}/health`)).headers.get('access-control-allow-origin')).toBe('https://example.org');
    expect((await fetch(`${base}/health`)).headers.get('access-control-allow-origin')).toBeNull();  // off by default
  } finally {
    await small.app.close();
    await short.dispose();
  }
});

test('a request past its time is stopped with 408 request_timeout', async () => {
  // A timeout shorter than any generation: the request waits its turn, then is stopped.
  const t = await start({ model, requestTimeoutMs: 1 });
  try {
    const r = await post(`${t.base}/v1/completions`, { prompt: 'ROMEO:', max_tokens: 200, temperature: 0 });
    expect(r.status).toBe(408);
    expect(((await r.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'request_timeout' });
    const s = await post(`${t.base}/v1/completions`, { prompt: 'ROMEO:', max_tokens: 200, temperature: 0, stream: true });
    const text = await s.text();
    expect(s.status === 408 || text.includes('request_timeout')).toBe(true);
  } finally {
    await t.app.close();
  }
});

test('embeddings, tokenize and detokenize, and one model by id', async () => {
  const e = await (await post(`${base}/v1/embeddings`, { input: ['ROMEO:', 'JULIET:'] })).json() as { data: Array<{ index: number; embedding: number[] }>; usage: { prompt_tokens: number } };
  expect(e.data.map((d) => d.index)).toEqual([0, 1]);
  const ids = await model.tokenizer.encode('ROMEO:');
  const h = await model.hiddenStates(ids), H = model.config.hiddenSize;
  const mean = Array.from({ length: H }, (_, c) => ids.reduce((a, _t, t) => a + h[t * H + c]!, 0) / ids.length);
  const norm = Math.hypot(...mean);
  e.data[0]!.embedding.forEach((v, c) => expect(v).toBeCloseTo(mean[c]! / norm, 6));
  expect(Math.hypot(...e.data[1]!.embedding)).toBeCloseTo(1, 9);
  expect(e.usage.prompt_tokens).toBe(ids.length + (await model.tokenizer.encode('JULIET:')).length);
  const bad = await post(`${base}/v1/embeddings`, { input: [] });
  expect(((await bad.json()) as { error: { param: string } }).error.param).toBe('input');
  const tok = await (await post(`${base}/tokenize`, { content: 'ROMEO:' })).json() as { tokens: number[] };
  expect(tok.tokens).toEqual(await model.tokenizer.encode('ROMEO:', { addSpecialTokens: false }));
  expect(((await (await post(`${base}/tokenize`, { content: 'ROMEO:', add_special: true })).json()) as { tokens: number[] }).tokens).toEqual(ids);
  expect(((await (await post(`${base}/detokenize`, { tokens: tok.tokens })).json()) as { content: string }).content).toBe('ROMEO:');
  expect((await post(`${base}/detokenize`, { tokens: [99999] })).status).toBe(400);
  const one = await (await fetch(`${base}/v1/models/jamba-tiny-shakespeare`)).json() as { id: string; object: string };
  expect(one).toMatchObject({ id: 'jamba-tiny-shakespeare', object: 'model' });
  expect((await fetch(`${base}/v1/models/gpt-4o`)).status).toBe(404);
});

test('chat works with no flags: the embedded model\'s own template, the reply ending before the next speaker', async () => {
  const plain = await start({ model });
  try {
    const r = await (await post(`${plain.base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'Who art thou?' }], max_tokens: 100, temperature: 0 })).json() as {
      choices: Array<{ message: { content: string }; finish_reason: string }>;
    };
    let lib;
    const it = model.chat([{ role: 'user', content: 'Who art thou?' }], { maxTokens: 100, temperature: 0 });
    do lib = await it.next(); while (!lib.done);
    expect(r.choices[0]!.message.content).toBe(lib.value.text);
    expect(r.choices[0]!.message.content).not.toContain('\n\n');
    expect(r.choices[0]!.finish_reason).toBe('stop');
  } finally {
    await plain.app.close();
  }
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
    expect(c.headers.get('retry-after')).toBe('1');
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

/**
 * The server as a replica behind a load balancer: liveness and readiness probes, the drain on
 * SIGTERM (new requests refused with 503 and Retry-After, requests in flight given the shutdown
 * timeout, then stopped with server_shutting_down, then exit 0), the drain a library user calls,
 * vLLM's metric names, cached prompt tokens and prompt_cache_key, and tool calls cut short.
 */
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { JambaModel, JambaServer, ServerLifecycle, createServer, jambaPlugin, loadModel } from '../lib';
import { CHAT_TEMPLATES, EMBEDDED } from './helpers/paths';
import { TOOLS } from './helpers/tools';

const template = fs.readFileSync(path.join(CHAT_TEMPLATES, 'jamba-1.7-mini.chat_template.jinja'), 'utf8');
const post = (url: string, body: unknown, init: RequestInit = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...init });
const events = (text: string) => text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
const LONG = { prompt: 'ROMEO:\n', max_tokens: 4000, temperature: 0 };

/** The value of one series line of a Prometheus exposition, by its full name and labels. */
function series(text: string, line: string): number {
  const l = text.split('\n').find((x) => x.startsWith(`${line} `));
  if (l === undefined) throw new Error(`no series ${line} in\n${text}`);
  return Number(l.slice(line.length + 1));
}

/** Reads a streamed response until its first data event, then hands back the rest as a promise of the whole text. */
async function firstEventThenAll(r: Response): Promise<{ first: string; rest: Promise<string> }> {
  const reader = r.body!.getReader();
  const dec = new TextDecoder();
  let text = '';
  while (!text.includes('\n\n')) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += dec.decode(value, { stream: true });
    }
  })();
  return { first: text, rest };
}

describe('jamba serve on SIGTERM', () => {
  let child: ChildProcess;
  let base: string;
  let stderr = '';

  beforeAll(async () => {
    child = spawn(process.execPath, [path.join(__dirname, '..', 'bin', 'jamba.js'), 'serve', '--port', '0', '--shutdown-timeout', '1.5'], { stdio: ['ignore', 'ignore', 'pipe'] });
    base = await new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /listening on (http:\/\/\S+)/.exec(stderr);
        if (m) resolve(m[1]!);
      });
      child.on('exit', (code) => reject(new Error(`jamba serve exited with ${code}: ${stderr}`)));
    });
  });
  afterAll(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  test('probes, then a drain: new requests refused, short ones finish, long ones stopped properly, exit 0', async () => {
    // Live at once (even while loading); ready once the model is.
    expect((await fetch(`${base}/health/live`)).status).toBe(200);
    for (let i = 0; (await fetch(`${base}/health/ready`)).status !== 200; i++) {
      expect(i).toBeLessThan(600);
      await new Promise((r) => setTimeout(r, 50));
    }
    const stream = await firstEventThenAll(await post(`${base}/v1/completions`, { ...LONG, stream: true }));
    expect(JSON.parse(events(stream.first)[0]!).object).toBe('text_completion');
    const plain = post(`${base}/v1/completions`, LONG);
    const short = post(`${base}/v1/completions`, { prompt: 'KING:\n', max_tokens: 8, temperature: 0 });
    // Both long requests are running before the signal.
    for (let i = 0; series(await (await fetch(`${base}/metrics`)).text(), 'vllm:num_requests_running{model_name="jamba-tiny-shakespeare"}') < 3; i++) {
      expect(i).toBeLessThan(600);
      await new Promise((r) => setTimeout(r, 10));
    }
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    child.kill('SIGTERM');
    for (let i = 0; (await fetch(`${base}/health/ready`)).status !== 503; i++) expect(i).toBeLessThan(100);
    const ready = await fetch(`${base}/health/ready`);
    expect(await ready.json()).toMatchObject({ status: 'draining' });
    expect((await fetch(`${base}/health/live`)).status).toBe(200);
    const refused = await post(`${base}/v1/completions`, { prompt: 'x', max_tokens: 1 });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('server_shutting_down');
    // The short request, in flight at the signal, finishes normally.
    const s = await short;
    expect(s.status).toBe(200);
    expect(((await s.json()) as { choices: Array<{ finish_reason: string }> }).choices[0]!.finish_reason).toBe('length');
    // At the deadline: the stream ends with an error event and [DONE]; the plain request gets a 503.
    const evs = events(await stream.rest);
    expect(evs[evs.length - 1]).toBe('[DONE]');
    expect(JSON.parse(evs[evs.length - 2]!)).toMatchObject({ error: { code: 'server_shutting_down', type: 'server_error' } });
    const p = await plain;
    expect(p.status).toBe(503);
    expect(((await p.json()) as { error: { code: string } }).error.code).toBe('server_shutting_down');
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/drained: 1 request\(s\) finished, 2 stopped at the deadline/);
  });
});

describe('in process', () => {
  let model: JambaModel;
  beforeAll(async () => {
    model = await loadModel(EMBEDDED);
  });
  afterAll(() => model.dispose());

  async function start(opts: Partial<Parameters<typeof createServer>[0]> = {}): Promise<{ app: JambaServer; base: string }> {
    const app = await createServer({ model, chatTemplate: template, ...opts });
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { app, base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
  }

  test('a jambaPlugin user drains through its lifecycle; requests that finish in time are not stopped', async () => {
    const lifecycle = new ServerLifecycle();
    const app = Fastify();
    await app.register(jambaPlugin, { model, lifecycle });
    app.get('/app/own', async () => ({ mine: true }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    try {
      const r = post(`${base}/v1/completions`, { prompt: 'ROMEO:\n', max_tokens: 30, temperature: 0 });
      while (lifecycle.active === 0) await new Promise((res) => setTimeout(res, 5));
      const drained = lifecycle.drain({ timeoutMs: 60_000 });
      expect((await fetch(`${base}/health/ready`)).status).toBe(503);
      expect((await post(`${base}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }] })).status).toBe(503);
      expect((await (await r).json() as { choices: Array<{ finish_reason: string }> }).choices[0]!.finish_reason).toBe('length');
      expect(await drained).toEqual({ completed: 1, stopped: 0 });
      // The application's own routes are its own.
      expect((await fetch(`${base}/app/own`)).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  test("vLLM's metric names with model_name, cached prompt tokens, and prompt_cache_key as a namespace that never changes a result", async () => {
    const { app, base } = await start({ parallel: 4 });
    try {
      type Usage = { prompt_tokens: number; completion_tokens: number; prompt_tokens_details: { cached_tokens: number } };
      const all: Array<{ usage: Usage; choices: Array<{ finish_reason: string }> }> = [];
      const ask = async (body: Record<string, unknown>) => {
        const r = await post(`${base}/v1/completions`, { max_tokens: 6, temperature: 0, ...body });
        expect(r.status).toBe(200);
        const j = await r.json() as { choices: Array<{ text: string; finish_reason: string }>; usage: Usage };
        all.push(j);
        return j;
      };
      model.clearPrefixCache();
      const prompt = 'First Citizen:\nBefore we proceed any further, hear me speak.\n';
      const a = await ask({ prompt });
      expect(a.usage.prompt_tokens_details.cached_tokens).toBe(0);
      const b = await ask({ prompt });
      expect(b.usage.prompt_tokens_details.cached_tokens).toBe(b.usage.prompt_tokens);
      expect(b.choices[0]!.text).toBe(a.choices[0]!.text);
      // Another namespace does not see the unkeyed entry; its own second request does.
      const k1 = await ask({ prompt, prompt_cache_key: 'tenant-1' });
      expect(k1.usage.prompt_tokens_details.cached_tokens).toBe(0);
      const k2 = await ask({ prompt, prompt_cache_key: 'tenant-1' });
      expect(k2.usage.prompt_tokens_details.cached_tokens).toBe(k2.usage.prompt_tokens);
      expect((await ask({ prompt, prompt_cache_key: 'tenant-2' })).usage.prompt_tokens_details.cached_tokens).toBe(0);
      for (const x of [k1, k2]) expect(x.choices[0]!.text).toBe(a.choices[0]!.text);
      // Sampled too: the key never changes what a seed draws.
      const sampled = async (key?: string) => (await ask({ prompt, temperature: 0.9, seed: 5, max_tokens: 12, ...(key ? { prompt_cache_key: key } : {}) })).choices[0]!.text;
      expect(await sampled('tenant-3')).toBe(await sampled());
      // n > 1: the prompt is counted once, as the prefill it was (a fresh prompt: nothing cached).
      const fresh = "MENENIUS:\nWhat work's, my countrymen, in hand?";
      const n2 = await ask({ prompt: fresh, n: 2, temperature: 0.8, seed: 1 });
      expect(n2.usage.prompt_tokens_details.cached_tokens).toBe(0);
      const single = await ask({ prompt: fresh });
      expect(n2.usage.prompt_tokens).toBe(single.usage.prompt_tokens);
      expect(single.usage.prompt_tokens_details.cached_tokens).toBe(single.usage.prompt_tokens);
      const n2again = await ask({ prompt: fresh, n: 2, temperature: 0.8, seed: 1 });
      expect(n2again.usage.prompt_tokens_details.cached_tokens).toBe(n2again.usage.prompt_tokens);
      expect(n2again.usage.prompt_tokens).toBe(n2.usage.prompt_tokens);
      // Streamed usage carries the same details.
      const s = await post(`${base}/v1/completions`, { prompt, max_tokens: 3, temperature: 0, stream: true, stream_options: { include_usage: true } });
      const usage = JSON.parse(events(await s.text()).at(-2)!) as { usage: Usage };
      expect(usage.usage.prompt_tokens_details.cached_tokens).toBe(usage.usage.prompt_tokens);
      all.push({ usage: usage.usage, choices: [{ finish_reason: 'length' }] });

      const text = await (await fetch(`${base}/metrics`)).text();
      const m = 'model_name="jamba-tiny-shakespeare"';
      expect(series(text, `vllm:prompt_tokens_total{${m}}`)).toBe(all.reduce((x, r) => x + r.usage.prompt_tokens, 0));
      expect(series(text, `vllm:generation_tokens_total{${m}}`)).toBe(all.reduce((x, r) => x + r.usage.completion_tokens, 0));
      expect(series(text, `jamba_prompt_tokens_cached_total`)).toBe(all.reduce((x, r) => x + r.usage.prompt_tokens_details.cached_tokens, 0));
      const choices = all.flatMap((r) => r.choices);
      expect(choices.every((c) => c.finish_reason === 'length')).toBe(true);
      expect(series(text, `vllm:request_success_total{${m},finished_reason="length"}`)).toBe(choices.length);
      expect(series(text, `vllm:num_requests_running{${m}}`)).toBe(0);
      expect(series(text, `vllm:num_requests_waiting{${m}}`)).toBe(0);
      const usagePerc = series(text, `vllm:kv_cache_usage_perc{${m}}`);
      expect(usagePerc).toBeGreaterThanOrEqual(0);
      expect(usagePerc).toBeLessThanOrEqual(1);
      for (const h of ['vllm:time_to_first_token_seconds', 'vllm:e2e_request_latency_seconds']) {
        expect(text).toContain(`# TYPE ${h} histogram`);
        expect(series(text, `${h}_count{${m}}`)).toBe(all.length);
        expect(series(text, `${h}_bucket{${m},le="+Inf"}`)).toBe(series(text, `${h}_count{${m}}`));
      }
    } finally {
      await app.close();
    }
  });

  test('the state slots in use are reported while generations run', async () => {
    const { app, base } = await start({ parallel: 4 });
    try {
      const ac = new AbortController();
      // The streams stay open until the check: a cancelled body ends its generation at the
      // server's next write, which could free a slot between the two reads below.
      const running = Array.from({ length: 2 }, () => post(`${base}/v1/completions`, { ...LONG, stream: true }, { signal: ac.signal }));
      const perc = async () => series(await (await fetch(`${base}/metrics`)).text(), 'vllm:kv_cache_usage_perc{model_name="jamba-tiny-shakespeare"}');
      for (let i = 0; (await perc()) < 0.5; i++) {
        expect(i).toBeLessThan(1000);
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(await perc()).toBe(0.5);  // two of the four generation slots
      ac.abort();
      await Promise.allSettled(running.map((p) => p.then((r) => r.body?.cancel())));
      for (let i = 0; (await perc()) > 0; i++) {
        expect(i).toBeLessThan(1000);
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      await app.close();
    }
  });

  test('a tool call cut short by max_tokens: complete calls kept, the partial one dropped, no markup in content, finish length', async () => {
    const messages = [{ role: 'user', content: 'Weather in Verona and the time in UTC?' }];
    const opts = { chatTemplate: template, tools: TOOLS, toolChoice: 'required' as const, temperature: 0 };
    // The embedded model, forced to call with parallel calls allowed, repeats calls until cut
    // short: the whole reply at 160 tokens, then cuts of it, library and stream alike.
    const run = async (maxTokens: number) => {
      const streamedCalls: string[] = [];
      const it = model.chat(messages, { ...opts, maxTokens, onToolCall: (c) => streamedCalls.push(c.function.name) });
      let text = '';
      let r = await it.next();
      while (!r.done) {
        text += r.value;
        r = await it.next();
      }
      return { result: r.value, text, streamedCalls };
    };
    const whole = await run(160);
    expect(whole.result.finishReason).toBe('length');
    const calls = whole.result.toolCalls!;
    expect(calls.length).toBeGreaterThan(1);
    expect(whole.result.text).toBe('');
    let partial = 0;
    for (let k = 1; k <= 160; k += 5) {
      const { result, text, streamedCalls } = await run(k);
      expect(result.finishReason).toBe('length');
      expect(text).toBe(result.text);
      expect(result.text).not.toMatch(/<tool|tool_calls>|"arguments"|\[\s*\{/);
      const got = result.toolCalls ?? [];
      // The calls so far are the whole reply's first ones, complete, in order, and streamed as they closed.
      expect(got.map((c) => [c.function.name, c.function.arguments])).toEqual(calls.slice(0, got.length).map((c) => [c.function.name, c.function.arguments]));
      expect(streamedCalls).toEqual(got.map((c) => c.function.name));
      if (got.length > 0) partial++;
    }
    expect(partial).toBeGreaterThan(0);

    // Over HTTP: the same cut, plain and streamed.
    const cut = 160;
    const { app, base } = await start();
    try {
      const body = { messages, tools: TOOLS, tool_choice: 'required', temperature: 0, max_tokens: cut };
      const plain = await (await post(`${base}/v1/chat/completions`, body)).json() as { choices: Array<{ message: { content: string | null; tool_calls?: Array<{ function: { name: string } }> }; finish_reason: string }> };
      const choice = plain.choices[0]!;
      expect(choice.finish_reason).toBe('length');
      expect(choice.message.content ?? '').not.toMatch(/<tool|tool_calls>/);
      expect(choice.message.tool_calls?.map((c) => c.function.name)).toEqual(calls.map((c) => c.function.name));
      const s = events(await (await post(`${base}/v1/chat/completions`, { ...body, stream: true })).text()).filter((e) => e !== '[DONE]').map((e) => JSON.parse(e) as { choices: Array<{ delta: { content?: string; tool_calls?: Array<{ index: number; function: { name: string } }> }; finish_reason: string | null }> });
      const deltas = s.map((e) => e.choices[0]!);
      const toolDeltas = deltas.filter((d) => d.delta.tool_calls);
      expect(toolDeltas.map((d) => d.delta.tool_calls!.map((c) => [c.index, c.function.name])).flat()).toEqual(calls.map((c, i) => [i, c.function.name]));
      expect(deltas.map((d) => d.delta.content ?? '').join('')).not.toMatch(/<tool|tool_calls>/);
      expect(deltas.at(-1)!.finish_reason).toBe('length');
    } finally {
      await app.close();
    }
  });
});

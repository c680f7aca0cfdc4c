/**
 * The official `openai` npm client against `jamba serve` (the CLI, in its own process, on
 * loopback): completions, chat, streaming, JSON schema output and tool calls (plain and
 * streamed) round-trip with the client's own types.
 */
import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import OpenAI from 'openai';
import { JambaModel, loadModel } from '../lib';
import { CHAT_TEMPLATES, EMBEDDED } from './helpers/paths';
import { TOOLS } from './helpers/tools';

const template = path.join(CHAT_TEMPLATES, 'jamba-1.7-mini.chat_template.jinja');
let model: JambaModel;
let server: ChildProcess;
let client: OpenAI;

beforeAll(async () => {
  model = await loadModel(EMBEDDED);
  server = spawn(process.execPath, [path.join(__dirname, '..', 'bin', 'jamba.js'), 'serve', '--port', '0', '--chat-template', template], { stdio: ['ignore', 'ignore', 'pipe'] });
  const base = await new Promise<string>((resolve, reject) => {
    let err = '';
    server.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /listening on (http:\/\/[^ ]+)/.exec(err);
      if (m && err.includes('model ready')) resolve(m[1]!);
    });
    server.on('exit', (code) => reject(new Error(`jamba serve exited with ${code}: ${err}`)));
  });
  client = new OpenAI({ apiKey: 'unused', baseURL: `${base}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  await exited;
  await model.dispose();
});

test('completions and chat, plain and streamed', async () => {
  const c = await client.completions.create({ model: 'jamba-tiny-shakespeare', prompt: 'ROMEO:\n', max_tokens: 12, temperature: 0 });
  expect(c.choices[0]!.text).toBe((await model.complete('ROMEO:\n', { maxTokens: 12, temperature: 0 })).text);
  let streamed = '';
  for await (const chunk of await client.completions.create({ model: 'jamba-tiny-shakespeare', prompt: 'ROMEO:\n', max_tokens: 12, temperature: 0, stream: true })) streamed += chunk.choices[0]?.text ?? '';
  expect(streamed).toBe(c.choices[0]!.text);
  const chat = await client.chat.completions.create({ model: 'jamba-tiny-shakespeare', messages: [{ role: 'user', content: 'Speak' }], max_tokens: 10, temperature: 0, n: 2, seed: 1 });
  expect(chat.choices).toHaveLength(2);
  let chatStreamed = '';
  const stream = await client.chat.completions.create({ model: 'jamba-tiny-shakespeare', messages: [{ role: 'user', content: 'Speak' }], max_tokens: 10, temperature: 0, stream: true });
  for await (const chunk of stream) chatStreamed += chunk.choices[0]?.delta.content ?? '';
  expect(chatStreamed).toBe((await client.chat.completions.create({ model: 'jamba-tiny-shakespeare', messages: [{ role: 'user', content: 'Speak' }], max_tokens: 10, temperature: 0 })).choices[0]!.message.content);
  await expect(client.completions.create({ model: 'jamba-tiny-shakespeare', prompt: 'x', best_of: 2 })).rejects.toMatchObject({ status: 400, param: 'best_of' });
});

test('JSON schema output and tool calls, plain and streamed', async () => {
  const r = await client.chat.completions.create({
    model: 'jamba-tiny-shakespeare', messages: [{ role: 'user', content: 'Who?' }], max_tokens: 40, temperature: 0.5, seed: 2,
    response_format: { type: 'json_schema', json_schema: { name: 'who', strict: true, schema: { type: 'object', additionalProperties: false, required: ['who'], properties: { who: { enum: ['Romeo', 'Juliet'] } } } } },
  });
  expect(['Romeo', 'Juliet']).toContain((JSON.parse(r.choices[0]!.message.content!) as { who: string }).who);
  const tools = TOOLS as OpenAI.Chat.Completions.ChatCompletionTool[];
  const call = await client.chat.completions.create({
    model: 'jamba-tiny-shakespeare', messages: [{ role: 'user', content: 'Weather in Verona?' }], tools, tool_choice: { type: 'function', function: { name: 'get_time' } },
    max_tokens: 200, temperature: 0,
  });
  expect(call.choices[0]!.finish_reason).toBe('tool_calls');
  const tc = call.choices[0]!.message.tool_calls![0]! as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
  expect(tc.function.name).toBe('get_time');
  expect(['UTC', 'CET']).toContain((JSON.parse(tc.function.arguments) as { zone: string }).zone);
  // Streamed: the call arrives as a tool_calls delta, with the same name and arguments; no call text leaks into content.
  const s = await client.chat.completions.create({
    model: 'jamba-tiny-shakespeare', messages: [{ role: 'user', content: 'Weather in Verona?' }], tools, tool_choice: { type: 'function', function: { name: 'get_time' } },
    max_tokens: 200, temperature: 0, stream: true,
  });
  let content = '', finish: string | null = null;
  const calls: Array<{ name?: string; arguments?: string }> = [];
  for await (const chunk of s) {
    const ch = chunk.choices[0];
    if (!ch) continue;
    content += ch.delta.content ?? '';
    for (const d of ch.delta.tool_calls ?? []) calls[d.index] = { name: d.function?.name, arguments: d.function?.arguments };
    finish = ch.finish_reason ?? finish;
  }
  expect(finish).toBe('tool_calls');
  expect(content).not.toContain('<tool_calls>');
  expect(calls).toEqual([{ name: 'get_time', arguments: tc.function.arguments }]);
  // The result goes back as a tool message, and the conversation continues.
  const next = await client.chat.completions.create({
    model: 'jamba-tiny-shakespeare', max_tokens: 5, temperature: 0, tools,
    messages: [{ role: 'user', content: 'Weather in Verona?' }, call.choices[0]!.message, { role: 'tool', tool_call_id: tc.id, content: '12:00' }],
  });
  expect(next.choices[0]!.message.role).toBe('assistant');
});

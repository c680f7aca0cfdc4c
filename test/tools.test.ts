/**
 * Tool calls through AI21's Jamba chat template: the call format parsed into OpenAI tool_calls,
 * `toolChoice` 'required' and a named function forced by constrained decoding (arguments valid
 * under the function's parameters), 'none' hiding the tools, and tool results fed back.
 */
import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import { InvalidArgumentError, JambaModel, loadModel } from '../lib';
import { ToolCallStream } from '../lib/tools';
import { rng as makeRng } from './helpers/rng';
import { CHAT_TEMPLATES, EMBEDDED } from './helpers/paths';
import { TIME as time, TOOLS, WEATHER as weather } from './helpers/tools';

const template = fs.readFileSync(path.join(CHAT_TEMPLATES, 'jamba-1.7-mini.chat_template.jinja'), 'utf8');

let model: JambaModel;
beforeAll(async () => {
  model = await loadModel(EMBEDDED);
});
afterAll(() => model.dispose());

async function reply(options: Parameters<JambaModel['chat']>[1], messages = [{ role: 'user', content: 'Weather in Verona?' }]) {
  const it = model.chat(messages, { chatTemplate: template, tools: TOOLS, maxTokens: 80, ...options });
  let r;
  do r = await it.next(); while (!r.done);
  return r.value;
}

/** Runs a reply through ToolCallStream in pieces cut at `cuts`; the text shown and the calls. */
function streamed(reply: string, cuts: number[], cut: boolean) {
  const s = new ToolCallStream('c');
  let text = '';
  const calls: string[] = [];
  let at = 0;
  for (const end of [...cuts, reply.length]) {
    const out = s.push(reply.slice(at, end));
    text += out.text;
    calls.push(...out.calls.map((c) => `${text.length}:${c.id}:${c.function.name}:${c.function.arguments}`));
    at = end;
  }
  text += s.end(cut);
  return { text, calls, closed: s.closed, all: s.calls };
}

test('the template\'s call block is parsed into OpenAI tool calls as it streams, however it is cut into pieces; its markup never shows', () => {
  const rand = makeRng(7);
  const int = (n: number) => Math.floor(rand() * n);
  const block = '<tool_calls>[\n    {"name": "get_time", "arguments": {"zone": "UTC", "note": "a } and ] in \\"quotes\\""}},\n    {"name": "f", "arguments": "{}"}\n]</tool_calls>';
  const cases: Array<[reply: string, cut: boolean, text: string, calls: string[], closed: boolean]> = [
    [`Let me look. ${block}`, false, 'Let me look.', ['get_time:{"zone":"UTC","note":"a } and ] in \\"quotes\\""}', 'f:{}'], true],
    [`${block}\nDone.`, false, 'Done.', ['get_time:{"zone":"UTC","note":"a } and ] in \\"quotes\\""}', 'f:{}'], true],
    ['no calls, and a < sign', false, 'no calls, and a < sign', [], false],
    // Cut short by maxTokens: the complete call is kept, the partial one and the markup dropped.
    ['Checking. <tool_calls>[\n    {"name": "a", "arguments": {}},\n    {"name": "x", "argu', true, 'Checking.', ['a:{}'], false],
    ['Checking. <tool_ca', true, 'Checking.', [], false],
    // The same partial tag at a natural end is text the model wrote.
    ['x <tool_ca', false, 'x <tool_ca', [], false],
    // Not in the template's format: nothing of the block shows.
    ['Hm <tool_calls>{"name": "a"}', false, 'Hm', [], false],
  ];
  for (const [reply, cut, text, calls, closed] of cases) {
    for (let trial = 0; trial < 30; trial++) {
      const cuts = trial === 0 ? [] : trial === 1 ? Array.from({ length: reply.length - 1 }, (_, i) => i + 1)
        : [...new Set(Array.from({ length: 1 + int(6) }, () => int(reply.length)))].sort((x, y) => x - y);
      const r = streamed(reply, cuts, cut);
      expect([reply, cuts, r.text]).toEqual([reply, cuts, text]);
      expect(r.all.map((c) => `${c.function.name}:${c.function.arguments}`)).toEqual(calls);
      expect(r.all.map((c) => c.id)).toEqual(calls.map((_, i) => `c-${i}`));
      expect(r.closed).toBe(closed);
      if (!text.includes('<')) expect(r.text).not.toMatch(/<tool|tool_calls>|"arguments"/);
    }
  }
  // Each call is reported as soon as its object closes, before the block ends.
  const s = new ToolCallStream('c');
  expect(s.push('<tool_calls>[{"name": "a", "arguments": {}}').calls.map((c) => c.function.name)).toEqual(['a']);
  expect(s.push(', {"name": "b", "arguments": {}}').calls.map((c) => c.function.name)).toEqual(['b']);
});

test("toolChoice 'required' and a named function force a call whose arguments match the function's parameters", async () => {
  const ajv = new Ajv();
  const valid = { get_weather: ajv.compile(weather), get_time: ajv.compile(time) } as Record<string, ReturnType<Ajv['compile']>>;
  for (const [toolChoice, seed] of [['required', 1], ['required', 2], [{ type: 'function', function: { name: 'get_weather' } }, 3]] as const) {
    const r = await reply({ toolChoice, parallelToolCalls: false, temperature: 0.9, seed, maxTokens: 240 });
    expect(r.finishReason).toBe('tool_calls');
    expect(r.toolCalls).toHaveLength(1);
    const call = r.toolCalls![0]!;
    if (typeof toolChoice === 'object') expect(call.function.name).toBe('get_weather');
    const args: unknown = JSON.parse(call.function.arguments);
    expect(valid[call.function.name]!(args) ? [] : valid[call.function.name]!.errors).toEqual([]);
  }
  // Several calls when parallel calls are allowed: each valid.
  const many = await reply({ toolChoice: 'required', temperature: 0, maxTokens: 240 });
  if (many.toolCalls) for (const c of many.toolCalls) expect(valid[c.function.name]!(JSON.parse(c.function.arguments))).toBe(true);
});

test("'none' hides the tools from the prompt; 'auto' leaves the reply as the model writes it; results go back as tool messages", async () => {
  const none = model.renderChat([{ role: 'user', content: 'x' }], { chatTemplate: template, tools: undefined });
  const it = model.chat([{ role: 'user', content: 'x' }], { chatTemplate: template, tools: TOOLS, toolChoice: 'none', maxTokens: 1, temperature: 0 });
  let r;
  do r = await it.next(); while (!r.done);
  expect(r.value.promptTokens).toBe((await model.tokenizer.encode(none, { addSpecialTokens: false })).length);
  const auto = await reply({ toolChoice: 'auto', temperature: 0, maxTokens: 20 });
  expect(auto.toolCalls).toBeUndefined();
  const fed = model.renderChat([
    { role: 'user', content: 'Time?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'c-0', type: 'function', function: { name: 'get_time', arguments: '{"zone": "UTC"}' } }] },
    { role: 'tool', tool_call_id: 'c-0', content: '12:00' },
  ], { chatTemplate: template, tools: TOOLS });
  expect(fed).toContain('<tool_calls>[\n    {"name": "get_time", "arguments": {"zone": "UTC"}}\n]</tool_calls>');
  expect(fed).toContain('<|tool|> 12:00');
});

test('bad tool choices are refused by name', async () => {
  await expect(reply({ toolChoice: { type: 'function', function: { name: 'nope' } } })).rejects.toThrow(/names the function 'nope'/);
  await expect(reply({ toolChoice: 'required' }, undefined).then(() => model.chat([{ role: 'user', content: 'x' }], { chatTemplate: template, toolChoice: 'required' }).next()))
    .rejects.toThrow(/no tools/);
  await expect(reply({ toolChoice: 'sometimes' as never })).rejects.toThrow(InvalidArgumentError);
  await expect(reply({ toolChoice: 'required', responseFormat: { type: 'json_object' } })).rejects.toThrow(/cannot be combined/);
});

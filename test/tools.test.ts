/**
 * Tool calls through AI21's Jamba chat template: the call format parsed into OpenAI tool_calls,
 * `toolChoice` 'required' and a named function forced by constrained decoding (arguments valid
 * under the function's parameters), 'none' hiding the tools, and tool results fed back.
 */
import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import { InvalidArgumentError, JambaModel, loadModel } from '../lib';
import { parseToolCalls, possibleCallStart } from '../lib/tools';
import { EMBEDDED, SHARED } from './helpers/paths';
import { TIME as time, TOOLS, WEATHER as weather } from './helpers/tools';

const template = fs.readFileSync(path.join(SHARED, 'fixtures', 'chat-template', 'jamba-1.7-mini.chat_template.jinja'), 'utf8');

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

test('the template\'s call block is parsed into OpenAI tool calls; anything else is text', () => {
  const text = 'Let me look. <tool_calls>[\n    {"name": "get_time", "arguments": {"zone": "UTC"}},\n    {"name": "f", "arguments": "{}"}\n]</tool_calls>';
  expect(parseToolCalls(text, 'c')).toEqual({ content: 'Let me look.', calls: [
    { id: 'c-0', type: 'function', function: { name: 'get_time', arguments: '{"zone":"UTC"}' } },
    { id: 'c-1', type: 'function', function: { name: 'f', arguments: '{}' } },
  ] });
  expect(parseToolCalls('no calls', 'c')).toBeNull();
  expect(parseToolCalls('<tool_calls>[{"name": "x", "argu', 'c')).toBeNull();  // cut short: text
  expect(possibleCallStart('hello <tool_')).toBe(6);
  expect(possibleCallStart('hello <tool_calls>[{"na')).toBe(17);
  expect(possibleCallStart('hello')).toBe(0);
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

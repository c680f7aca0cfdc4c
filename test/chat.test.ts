/** Chat templates against test/fixtures/chat-template (rendered by transformers' jinja2 setup). */
import fs from 'node:fs';
import path from 'node:path';
import { ChatMessage, ChatTemplateError, JambaModel, loadModel } from '../lib';
import { CHAT_TEMPLATES, EMBEDDED, TINY_RANDOM } from './helpers/paths';

const DIR = CHAT_TEMPLATES;
const template = fs.readFileSync(path.join(DIR, 'jamba-1.7-mini.chat_template.jinja'), 'utf8');
const fixture = JSON.parse(fs.readFileSync(path.join(DIR, 'cases.json'), 'utf8')) as {
  bos_token: string;
  cases: Array<{ name: string; messages: ChatMessage[]; tools?: unknown[]; documents?: unknown[]; knobs?: unknown; add_generation_prompt: boolean; rendered: string }>;
};

let model: JambaModel;
beforeAll(async () => {
  model = await loadModel(EMBEDDED);
});
afterAll(() => model.dispose());

test.each(fixture.cases.map((c) => [c.name, c] as const))('renders %s exactly', (_n, c) => {
  expect(fixture.bos_token).toBe('<|startoftext|>');
  const out = model.renderChat(c.messages, {
    chatTemplate: template, addGenerationPrompt: c.add_generation_prompt, tools: c.tools, documents: c.documents,
    templateVariables: c.knobs !== undefined ? { knobs: c.knobs } : undefined,
  });
  expect(out).toBe(c.rendered);
});

test('a model without a chat template says so', async () => {
  const base = await loadModel(TINY_RANDOM);
  try {
    expect(() => base.renderChat([{ role: 'user', content: 'hi' }])).toThrow(ChatTemplateError);
    expect(() => base.renderChat([{ role: 'user', content: 'hi' }])).toThrow(/has no chat template/);
    const it = base.chat([{ role: 'user', content: 'hi' }]);
    await expect(it.next()).rejects.toBeInstanceOf(ChatTemplateError);
  } finally {
    await base.dispose();
  }
});

test('the embedded model chats in its own dialogue format, and a reply ends at the blank line before the next speaker', async () => {
  const messages: ChatMessage[] = [
    { role: 'system', content: 'A street in Verona.' }, { role: 'user', content: 'Who art thou?' }, { role: 'assistant', content: 'A friend.' },
    { role: 'user', name: 'Romeo', content: [{ type: 'text', text: 'Speak' }, { type: 'text', text: ' again.' }] },
  ];
  expect(model.renderChat(messages)).toBe('<|startoftext|>A street in Verona.\n\nUSER:\nWho art thou?\n\nJAMBA:\nA friend.\n\nROMEO:\nSpeak again.\n\nJAMBA:\n');
  expect(model.chatStops).toEqual(['\n\n']);
  const ids = await model.tokenizer.encode(model.renderChat(messages), { addSpecialTokens: false });
  const free = await model.complete(ids, { maxTokens: 120, temperature: 0 });
  let r;
  const it = model.chat(messages, { maxTokens: 120, temperature: 0 });
  do r = await it.next(); while (!r.done);
  const cut = free.text.indexOf('\n\n');
  expect(cut).toBeGreaterThan(0);
  expect(r.value.text).toBe(free.text.slice(0, cut));
  expect(r.value.finishReason).toBe('stop');
  // An explicit stop, or another template, replaces the default.
  const it2 = model.chat(messages, { maxTokens: 120, temperature: 0, stop: ['zzz'] });
  do r = await it2.next(); while (!r.done);
  expect(r.value.text.length).toBeGreaterThan(cut);
});

test('messages are validated', () => {
  expect(() => model.renderChat([], { chatTemplate: template })).toThrow(/non-empty array/);
  expect(() => model.renderChat([{ role: '', content: 'x' }], { chatTemplate: template })).toThrow(/messages\[0\]\.role/);
  // Content may be any JSON value (the template decides); what is not JSON is refused by its path.
  expect(() => model.renderChat([{ role: 'user', content: [{ type: 'x', f: () => 1 }] }], { chatTemplate: template })).toThrow(/messages\[0\]\.content\[0\]\.f is not a JSON value/);
  expect(() => model.renderChat([{ role: 'user', content: { n: NaN } }], { chatTemplate: template })).toThrow(/messages\[0\]\.content\.n/);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  expect(() => model.renderChat([{ role: 'user', content: cyclic }], { chatTemplate: template })).toThrow(/messages\[0\]\.content\.self/);
  expect(() => model.renderChat([{ role: 'user', content: new Date(0) as unknown as string }], { chatTemplate: template })).toThrow(/messages\[0\]\.content is not/);
});

/**
 * Content that is not a string or text parts (image parts, objects, numbers) goes to the template
 * as it is, as transformers hands it over: rendered as Python's jinja2 renders it in transformers'
 * setup (test/fixtures/chat-template/any-content/render.py made the expected strings).
 */
const anyContent = JSON.parse(fs.readFileSync(path.join(DIR, 'any-content', 'cases.json'), 'utf8')) as {
  templates: Record<string, { path?: string; inline?: string }>;
  cases: Array<{ name: string; template: string; messages: ChatMessage[]; expected: string }>;
};
test.each(anyContent.cases.map((c) => [c.name, c] as const))('any content: %s, as transformers renders it', (_n, c) => {
  const t = anyContent.templates[c.template]!;
  const source = t.inline ?? fs.readFileSync(path.join(__dirname, '..', t.path!), 'utf8');
  expect(model.renderChat(c.messages, { chatTemplate: source })).toBe(c.expected);
});

test('chat() streams the reply to the rendered conversation', async () => {
  const messages: ChatMessage[] = [{ role: 'user', content: 'Speak, speak.' }];
  const opts = { chatTemplate: template, maxTokens: 16, temperature: 0 };
  let streamed = '';
  for await (const piece of model.chat(messages, opts)) streamed += piece;
  const rendered = model.renderChat(messages, { chatTemplate: template });
  const ids = await model.tokenizer.encode(rendered, { addSpecialTokens: false });
  expect(ids[0]).toBe(1);  // the template wrote the BOS, and only one
  expect(ids[1]).not.toBe(1);
  expect(streamed).toBe((await model.complete(ids, { maxTokens: 16, temperature: 0 })).text);
});

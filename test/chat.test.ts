/** Chat templates against shared/fixtures/chat-template (rendered by transformers' jinja2 setup). */
import fs from 'node:fs';
import path from 'node:path';
import { ChatMessage, ChatTemplateError, JambaModel, loadModel } from '../lib';
import { EMBEDDED, SHARED } from './helpers/paths';

const DIR = path.join(SHARED, 'fixtures', 'chat-template');
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
  expect(() => model.renderChat([{ role: 'user', content: 'hi' }])).toThrow(ChatTemplateError);
  expect(() => model.renderChat([{ role: 'user', content: 'hi' }])).toThrow(/has no chat template/);
  const it = model.chat([{ role: 'user', content: 'hi' }]);
  await expect(it.next()).rejects.toBeInstanceOf(ChatTemplateError);
});

test('messages are validated', () => {
  expect(() => model.renderChat([], { chatTemplate: template })).toThrow(/non-empty array/);
  expect(() => model.renderChat([{ role: '', content: 'x' }], { chatTemplate: template })).toThrow(/messages\[0\]\.role/);
  expect(() => model.renderChat([{ role: 'user', content: 5 as unknown as string }], { chatTemplate: template })).toThrow(/messages\[0\]\.content/);
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

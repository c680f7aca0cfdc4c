/**
 * Chat templates: the Jinja `chat_template` a checkpoint ships in tokenizer_config.json, rendered
 * with @huggingface/jinja (Hugging Face's JavaScript Jinja, which renders AI21's Jamba template —
 * macros, namespaces, tojson(indent=2), map(attribute=…), tools and documents — exactly as
 * transformers' apply_chat_template does; see test/chat.test.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { InvalidArgumentError, JambaError } from './errors';
import type { JambaTokenizer } from './tokenizer';
import type { ToolCall, ToolChoice } from './tools';

/** One part of a message's content (OpenAI's content parts): text, or anything a template reads. */
export interface ContentPart {
  type: string;
  text?: string;
  [extra: string]: unknown;
}

/** What a message's content may be: any JSON value, as transformers hands content to the template. */
export type MessageContent = string | ContentPart[] | null | number | boolean | { [key: string]: unknown } | unknown[];

export interface ChatMessage {
  role: string;
  /**
   * Text, an array of content parts, or any other JSON value: the template receives it as it is
   * (as transformers' apply_chat_template hands it over) and decides how to render it.
   */
  content: MessageContent;
  [extra: string]: unknown;
}

export interface ChatOptions {
  /** Append the assistant header so the model writes the reply (default true). */
  addGenerationPrompt?: boolean;
  /** Tool (function) definitions, as the template expects them. */
  tools?: unknown[];
  /**
   * 'auto' (default): the model may call tools; 'none': it is not shown them; 'required', or
   * `{ type: 'function', function: { name } }`: it must call one (that one), forced by
   * constrained decoding. Calls are parsed into `result.toolCalls` (AI21's template format).
   */
  toolChoice?: ToolChoice;
  /** With `toolChoice` 'required': false allows exactly one call (default true: one or more). */
  parallelToolCalls?: boolean;
  /**
   * Called with each tool call as soon as it is complete, while the reply streams (they are all
   * in `result.toolCalls` at the end). The streamed text never holds the call markup; a call cut
   * short by `maxTokens` is dropped, and the finish reason is then 'length'.
   */
  onToolCall?: (call: ToolCall) => void;
  /** Documents for grounded answers, as the template expects them. */
  documents?: unknown[];
  /** A template to use instead of the model's. */
  chatTemplate?: string;
  /** Extra variables for the template (for example AI21's `knobs`). */
  templateVariables?: Record<string, unknown>;
}

/** The model has no chat template, or rendering it failed. */
export class ChatTemplateError extends JambaError {
  /** 'missing': the model ships no template; 'invalid': it does not parse or render. */
  constructor(readonly reason: 'missing' | 'invalid', message: string) {
    super('chat_template', message);
  }
}

const compiled = new Map<string, Template>();

function modelTemplate(dir: string): string {
  const file = path.join(dir, 'tokenizer_config.json');
  let cfg: { chat_template?: unknown } = {};
  if (fs.existsSync(file)) cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as { chat_template?: unknown };
  let t = cfg.chat_template;
  // transformers also allows a list of named templates; "default" is the one used for chat.
  if (Array.isArray(t)) t = (t as Array<{ name?: string; template?: string }>).find((x) => x.name === 'default')?.template;
  if (typeof t !== 'string' || t === '') {
    const jinja = path.join(dir, 'chat_template.jinja');
    if (fs.existsSync(jinja)) return fs.readFileSync(jinja, 'utf8');
    throw new ChatTemplateError('missing', `${dir} has no chat template (tokenizer_config.json "chat_template" or chat_template.jinja): ` +
      'it is a base model; use generate() with plain text, or pass options.chatTemplate');
  }
  return t;
}

function validateMessages(messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw new InvalidArgumentError('messages must be a non-empty array');
  messages.forEach((m, i) => {
    if (typeof m !== 'object' || m === null) throw new InvalidArgumentError(`messages[${i}] must be an object`);
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (typeof role !== 'string' || role === '') throw new InvalidArgumentError(`messages[${i}].role must be a non-empty string`);
    const bad = notJson(content, `messages[${i}].content`);
    if (bad) throw new InvalidArgumentError(`${bad} is not a JSON value (a string, number, boolean, null, array or plain object)`);
  });
  return messages as ChatMessage[];
}

/** The path of the first part of `v` that is not a JSON value, or null (depth-first; cycles count as not JSON). */
function notJson(v: unknown, where: string, seen: Set<object> = new Set()): string | null {
  if (v === null || v === undefined || typeof v === 'string' || typeof v === 'boolean') return null;
  if (typeof v === 'number') return Number.isFinite(v) ? null : where;
  if (typeof v !== 'object' || seen.has(v)) return where;
  const proto = Object.getPrototypeOf(v) as unknown;
  if (!Array.isArray(v) && proto !== Object.prototype && proto !== null) return where;
  seen.add(v);
  for (const [k, x] of Object.entries(v)) {
    const bad = notJson(x, Array.isArray(v) ? `${where}[${k}]` : `${where}.${k}`, seen);
    if (bad) return bad;
  }
  seen.delete(v);
  return null;
}

export function renderChat(dir: string, tokenizer: JambaTokenizer, messages: ChatMessage[], options: ChatOptions = {}): string {
  const msgs = validateMessages(messages);
  const source = options.chatTemplate ?? modelTemplate(dir);
  let template = compiled.get(source);
  if (!template) {
    try {
      template = new Template(source);
    } catch (e) {
      throw new ChatTemplateError('invalid', `the chat template does not parse: ${(e as Error).message}`);
    }
    compiled.set(source, template);
  }
  const special = (id: number | null) => (id === null ? '' : tokenizer.decode([id], { skipSpecialTokens: false }));
  try {
    return template.render({
      ...options.templateVariables,
      messages: msgs,
      add_generation_prompt: options.addGenerationPrompt ?? true,
      bos_token: special(tokenizer.bosTokenId),
      eos_token: special(tokenizer.eosTokenId),
      ...(options.tools !== undefined ? { tools: options.tools } : {}),
      ...(options.documents !== undefined ? { documents: options.documents } : {}),
    });
  } catch (e) {
    throw new ChatTemplateError('invalid', `rendering the chat template failed: ${(e as Error).message}`);
  }
}

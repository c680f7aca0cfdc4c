/**
 * Request validation for the OpenAI-compatible endpoints: every field's type and range is
 * checked and reported with its name (`param`), before anything reaches the model. A field is
 * honoured, or accepted as metadata that cannot change the output (`user`, `metadata`, `store`,
 * `service_tier`, `safety_identifier`), or refused with a 400 naming it: one
 * the OpenAI API defines but this server does not implement, or one it does not define at all.
 * Never silently dropped.
 */
import type { ChatMessage } from '../chat';
import { resolveConstraint } from '../constraints/grammar';
import { resolveBias } from '../sampling';
import { ToolChoice, toolConstraint } from '../tools';
import type { GenerateOptions } from '../generation';
import { Exclusion, ExcludeOptions } from '../retrieval/exclude';
import { ApiError, badParam } from './errors';

/** A request's `retrieval` object: which corpus, and the RALM parameters. */
export interface RetrievalParams {
  corpus: string | undefined;
  stride?: number;
  queryTokens?: number;
  maxPassageTokens?: number;
  rerank?: number;
  exclude?: ExcludeOptions;
}

export interface CommonParams {
  model: string | undefined;
  retrieval: RetrievalParams | undefined;
  stream: boolean;
  includeUsage: boolean;
  /** Choices per prompt. */
  n: number;
  options: GenerateOptions;
}

export interface CompletionParams extends CommonParams {
  /** One prompt or several (each gets `n` choices, indexed prompt-major). */
  prompts: Array<string | number[]>;
  echo: boolean;
}

/** Fields that carry no instruction for the model: accepted, checked for type, and not used. */
const METADATA = ['user', 'metadata', 'store', 'service_tier', 'prompt_cache_key', 'safety_identifier'];
const COMMON = ['model', 'stream', 'stream_options', 'max_tokens', 'temperature', 'top_p', 'n', 'stop', 'seed', 'logprobs', 'logit_bias',
  'presence_penalty', 'frequency_penalty', 'response_format', ...METADATA,
  // Extensions, as llama.cpp's and vLLM's servers name them.
  'top_k', 'min_p', 'repetition_penalty', 'grammar', 'retrieval'];
const COMPLETION_FIELDS = new Set([...COMMON, 'prompt', 'echo']);
const CHAT_FIELDS = new Set([...COMMON, 'messages', 'max_completion_tokens', 'top_logprobs', 'tools', 'tool_choice', 'parallel_tool_calls', 'documents']);
/** OpenAI fields that would change the output and are not implemented: why, for the 400. */
const NOT_IMPLEMENTED: Record<string, string> = {
  best_of: 'server-side best-of ranking is not implemented; ask for n choices and score them',
  suffix: 'insertion (fill in the middle) is not supported by Jamba',
  audio: 'audio output is not supported', modalities: 'only text output is supported', prediction: 'predicted outputs are not implemented',
  functions: "the deprecated 'functions' are not supported; use 'tools'", function_call: "the deprecated 'function_call' is not supported; use 'tool_choice'",
  reasoning_effort: 'Jamba is not a reasoning model', web_search_options: 'web search is not available', verbosity: 'verbosity control is not implemented',
};
const MAX_N = 16;

function checkFields(b: Body, allowed: Set<string>): void {
  for (const k of Object.keys(b)) {
    if (allowed.has(k)) continue;
    if (k in NOT_IMPLEMENTED) throw badParam(k, `'${k}' is not supported by this server: ${NOT_IMPLEMENTED[k]}.`);
    throw badParam(k, `'${k}' is not a field of this endpoint.`);
  }
}

export interface ChatParams extends CommonParams {
  messages: ChatMessage[];
  tools: unknown[] | undefined;
  toolChoice: ToolChoice | undefined;
  parallelToolCalls: boolean;
  documents: unknown[] | undefined;
}

type Body = Record<string, unknown>;

function asBody(body: unknown): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'The request body must be a JSON object.');
  return body as Body;
}

function num(b: Body, key: string, min: number, max: number, integer = false): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badParam(key, `'${key}' must be a number.`);
  if (integer && !Number.isInteger(v)) throw badParam(key, `'${key}' must be an integer.`);
  if (v < min || v > max) throw badParam(key, `'${key}' must be between ${min} and ${max}, got ${v}.`);
  return v;
}

function bool(b: Body, key: string): boolean {
  const v = b[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badParam(key, `'${key}' must be a boolean.`);
  return v;
}

function common(b: Body, maxTokensLimit: number, vocab: number): CommonParams {
  const model = b.model;
  if (model !== undefined && typeof model !== 'string') throw badParam('model', "'model' must be a string.");
  for (const k of ['user', 'service_tier', 'prompt_cache_key', 'safety_identifier'])
    if (b[k] !== undefined && b[k] !== null && typeof b[k] !== 'string') throw badParam(k, `'${k}' must be a string.`);
  if (b.metadata !== undefined && b.metadata !== null && (typeof b.metadata !== 'object' || Array.isArray(b.metadata))) throw badParam('metadata', "'metadata' must be an object.");
  if (b.store !== undefined && b.store !== null && typeof b.store !== 'boolean') throw badParam('store', "'store' must be a boolean.");
  const n = num(b, 'n', 1, MAX_N, true) ?? 1;
  const so = b.stream_options;
  if (so !== undefined && so !== null && (typeof so !== 'object' || Array.isArray(so))) throw badParam('stream_options', "'stream_options' must be an object.");
  const includeUsage = so ? (so as Body).include_usage === true : false;
  let stop = b.stop;
  if (stop === null || stop === undefined) stop = [];
  if (typeof stop === 'string') stop = [stop];
  if (!Array.isArray(stop) || stop.length > 4 || stop.some((s) => typeof s !== 'string' || s === ''))
    throw badParam('stop', "'stop' must be a non-empty string or an array of at most 4 of them.");
  const maxTokens = num(b, 'max_completion_tokens', 0, maxTokensLimit, true) ?? num(b, 'max_tokens', 0, maxTokensLimit, true) ?? 16;
  const lp = b.logprobs;
  let logprobs: number | undefined;
  if (typeof lp === 'boolean') logprobs = lp ? (num(b, 'top_logprobs', 0, 20, true) ?? 0) : undefined;
  else logprobs = num(b, 'logprobs', 0, 20, true);
  const seed = num(b, 'seed', -(2 ** 53), 2 ** 53, true);
  const options: GenerateOptions = {
    maxTokens,
    temperature: num(b, 'temperature', 0, 2) ?? 1,
    topP: num(b, 'top_p', 0, 1) ?? 1,
    topK: num(b, 'top_k', 0, 1e6, true) ?? 0,
    minP: num(b, 'min_p', 0, 1) ?? 0,
    repetitionPenalty: num(b, 'repetition_penalty', 0.01, 100) ?? 1,
    presencePenalty: num(b, 'presence_penalty', -2, 2) ?? 0,
    frequencyPenalty: num(b, 'frequency_penalty', -2, 2) ?? 0,
    stop: stop as string[],
    logprobs,
  };
  // The prefix-cache namespace: it decides which cached states a prompt may reuse, never a result.
  if (typeof b.prompt_cache_key === 'string') options.promptCacheKey = b.prompt_cache_key;
  const bias = b.logit_bias;
  if (bias !== undefined && bias !== null) {
    try {
      resolveBias(bias, vocab);  // the library's rules, with the field under its OpenAI name
    } catch (e) {
      throw badParam('logit_bias', `${(e as Error).message.replace(/logitBias/g, 'logit_bias')}.`);
    }
    options.logitBias = bias as Record<number, number>;
  }
  if (b.response_format !== undefined && b.response_format !== null) options.responseFormat = b.response_format as GenerateOptions['responseFormat'];
  if (b.grammar !== undefined && b.grammar !== null) options.grammar = b.grammar as string;
  try {
    resolveConstraint(options.responseFormat, options.grammar);
  } catch (e) {
    const param = options.grammar !== undefined && !/responseFormat/.test((e as Error).message) ? 'grammar' : 'response_format';
    throw badParam(param, (e as Error).message.replace(/responseFormat/g, 'response_format'));
  }
  if (options.topP === 0) throw badParam('top_p', "'top_p' must be greater than 0.");
  if (seed !== undefined) options.seed = seed;
  return { model, stream: bool(b, 'stream'), includeUsage, n, options, retrieval: parseRetrieval(b.retrieval) };
}

function parseRetrieval(v: unknown): RetrievalParams | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw badParam('retrieval', "'retrieval' must be an object.");
  // Keys as the client names them, so that errors point at 'retrieval.stride' and so on.
  const r = Object.fromEntries(Object.entries(v as Body).map(([k, x]) => [`retrieval.${k}`, x])) as Body;
  for (const k of Object.keys(r))
    if (!['corpus', 'stride', 'query_tokens', 'max_passage_tokens', 'rerank', 'exclude'].includes(k.slice(10))) throw badParam(k, `'${k}' is not a retrieval option.`);
  const corpus = r['retrieval.corpus'];
  if (corpus !== undefined && typeof corpus !== 'string') throw badParam('retrieval.corpus', "'retrieval.corpus' must be a string.");
  const out: RetrievalParams = { corpus };
  const field = (key: string, name: keyof RetrievalParams, max: number) => {
    const n = num(r, `retrieval.${key}`, 1, max, true);
    if (n !== undefined) (out as unknown as Record<string, number>)[name] = n;
  };
  const rk = r['retrieval.rerank'];
  if (rk === true) out.rerank = 16;
  else if (rk !== false) field('rerank', 'rerank', 64);
  field('stride', 'stride', 4096);
  field('query_tokens', 'queryTokens', 4096);
  field('max_passage_tokens', 'maxPassageTokens', 65536);
  const ex = r['retrieval.exclude'];
  if (ex !== undefined && ex !== null) {
    if (typeof ex !== 'object' || Array.isArray(ex)) throw badParam('retrieval.exclude', "'retrieval.exclude' must be an object.");
    const e = ex as Body;
    for (const k of Object.keys(e))
      if (!['titles', 'ids', 'overlap_text', 'overlap_words'].includes(k)) throw badParam(`retrieval.exclude.${k}`, `'retrieval.exclude.${k}' is not an exclusion option (titles, ids, overlap_text, overlap_words).`);
    const o: ExcludeOptions = {};
    if (e.titles !== undefined) o.titles = e.titles as string[];
    if (e.ids !== undefined) o.ids = e.ids as string[];
    if (e.overlap_text !== undefined) o.overlapText = e.overlap_text as string;
    if (e.overlap_words !== undefined) o.overlapWords = e.overlap_words as number;
    try {
      new Exclusion(o);
    } catch (err) {
      const m = /^exclude\.(\w+)/.exec((err as Error).message);
      const name = m ? { titles: 'titles', ids: 'ids', overlapText: 'overlap_text', overlapWords: 'overlap_words' }[m[1]!] ?? m[1] : '';
      throw badParam(`retrieval.exclude${name ? `.${name}` : ''}`, `'retrieval.exclude${name ? `.${name}` : ''}': ${(err as Error).message.replace(/^exclude\.\w+ /, '')}.`);
    }
    out.exclude = o;
  }
  return out;
}

export function parseCompletion(body: unknown, maxTokensLimit: number, vocab: number): CompletionParams {
  const b = asBody(body);
  checkFields(b, COMPLETION_FIELDS);
  const p = b.prompt;
  const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((t) => Number.isInteger(t) && t >= 0 && t < vocab);
  let prompts: Array<string | number[]>;
  if (typeof p === 'string' || isIds(p)) prompts = [p];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string' || isIds(x))) prompts = p as Array<string | number[]>;
  else throw badParam('prompt', `'prompt' must be a string, an array of token ids below ${vocab}, or a non-empty array of either.`);
  const c = common(b, maxTokensLimit, vocab);
  if (prompts.length * c.n > MAX_N * 4) throw badParam('prompt', `${prompts.length} prompts × n ${c.n} is more than ${MAX_N * 4} choices in one request.`);
  return { ...c, prompts, echo: bool(b, 'echo') };
}

export function parseChat(body: unknown, maxTokensLimit: number, vocab: number): ChatParams {
  const b = asBody(body);
  checkFields(b, CHAT_FIELDS);
  const m = b.messages;
  if (!Array.isArray(m) || m.length === 0) throw badParam('messages', "'messages' must be a non-empty array.");
  m.forEach((msg, i) => {
    if (typeof msg !== 'object' || msg === null) throw badParam(`messages[${i}]`, `'messages[${i}]' must be an object.`);
    const { role, content } = msg as Body;
    if (typeof role !== 'string' || !['system', 'user', 'assistant', 'tool', 'developer'].includes(role))
      throw badParam(`messages[${i}].role`, `'messages[${i}].role' must be one of system, developer, user, assistant, tool.`);
    if (Array.isArray(content)) {
      content.forEach((part, j) => {
        const where = `messages[${i}].content[${j}]`;
        if (typeof part !== 'object' || part === null || (part as Body).type !== 'text')
          throw badParam(`${where}.type`, `'${where}' must be a text part { "type": "text", "text": ... }: this model reads text only.`);
        if (typeof (part as Body).text !== 'string') throw badParam(`${where}.text`, `'${where}.text' must be a string.`);
      });
    } else if (content !== null && content !== undefined && typeof content !== 'string') {
      throw badParam(`messages[${i}].content`, `'messages[${i}].content' must be a string, an array of text parts, or null.`);
    }
  });
  for (const k of ['tools', 'documents'] as const)
    if (b[k] !== undefined && b[k] !== null && !Array.isArray(b[k])) throw badParam(k, `'${k}' must be an array.`);
  const tc = b.tool_choice ?? undefined;
  if (b.parallel_tool_calls !== undefined && b.parallel_tool_calls !== null && typeof b.parallel_tool_calls !== 'boolean')
    throw badParam('parallel_tool_calls', "'parallel_tool_calls' must be a boolean.");
  // 'none': the model is not told of the tools, so it cannot call them.
  const tools = tc === 'none' ? undefined : (b.tools ?? undefined) as unknown[] | undefined;
  const c = common(b, maxTokensLimit, vocab);
  let forced;
  try {
    forced = toolConstraint(tools, tc, b.parallel_tool_calls !== false);
  } catch (e) {
    const msg = (e as Error).message.replace(/toolChoice/g, 'tool_choice');
    throw badParam(/^tools\[/.test(msg) ? 'tools' : 'tool_choice', `${msg}.`);
  }
  if (forced && (c.options.responseFormat !== undefined || c.options.grammar !== undefined))
    throw badParam('tool_choice', "'tool_choice' forces a tool call: it cannot be combined with 'response_format' or 'grammar'.");
  return {
    ...c, messages: m as ChatMessage[], tools, documents: (b.documents ?? undefined) as unknown[] | undefined,
    toolChoice: tc as ToolChoice | undefined, parallelToolCalls: b.parallel_tool_calls !== false,
  };
}

/** `/v1/embeddings`: `input` a string, token ids, or an array of either; `encoding_format` float only. */
export function parseEmbeddings(body: unknown, vocab: number): { inputs: Array<string | number[]>; model: string | undefined } {
  const b = asBody(body);
  checkFields(b, new Set(['input', 'model', 'encoding_format', 'user', 'dimensions']));
  if (b.model !== undefined && typeof b.model !== 'string') throw badParam('model', "'model' must be a string.");
  if (b.encoding_format !== undefined && b.encoding_format !== 'float') throw badParam('encoding_format', "'encoding_format' may only be 'float' here.");
  if (b.dimensions !== undefined) throw badParam('dimensions', "'dimensions' is not supported: the embedding has the model's hidden size.");
  const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((t) => Number.isInteger(t) && t >= 0 && t < vocab);
  const x = b.input;
  let inputs: Array<string | number[]>;
  if ((typeof x === 'string' && x !== '') || isIds(x)) inputs = [x];
  else if (Array.isArray(x) && x.length > 0 && x.length <= 256 && x.every((y) => (typeof y === 'string' && y !== '') || isIds(y))) inputs = x as Array<string | number[]>;
  else throw badParam('input', `'input' must be a non-empty string, token ids below ${vocab}, or an array of up to 256 of them.`);
  return { inputs, model: b.model as string | undefined };
}

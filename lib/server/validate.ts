/**
 * Request validation for the OpenAI-compatible endpoints: every field's type and range is
 * checked and reported with its name (`param`), before anything reaches the model.
 */
import type { ChatMessage } from '../chat';
import type { GenerateOptions } from '../generation';
import { ApiError, badParam } from './errors';

/** A request's `retrieval` object: which corpus, and the RALM parameters. */
export interface RetrievalParams {
  corpus: string | undefined;
  stride?: number;
  queryTokens?: number;
  maxPassageTokens?: number;
  rerank?: number;
}

export interface CommonParams {
  model: string | undefined;
  retrieval: RetrievalParams | undefined;
  stream: boolean;
  includeUsage: boolean;
  options: GenerateOptions;
}

export interface CompletionParams extends CommonParams {
  prompt: string | number[];
  echo: boolean;
}

export interface ChatParams extends CommonParams {
  messages: ChatMessage[];
  tools: unknown[] | undefined;
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

function common(b: Body, maxTokensLimit: number): CommonParams {
  const model = b.model;
  if (model !== undefined && typeof model !== 'string') throw badParam('model', "'model' must be a string.");
  const n = num(b, 'n', 1, 1, true);
  void n;  // only n = 1 is served
  for (const k of ['presence_penalty', 'frequency_penalty'] as const) {
    const v = num(b, k, -2, 2);
    if (v !== undefined && v !== 0) throw badParam(k, `'${k}' is not supported; use 'repetition_penalty'.`);
  }
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
    stop: stop as string[],
    logprobs,
  };
  if (options.topP === 0) throw badParam('top_p', "'top_p' must be greater than 0.");
  if (seed !== undefined) options.seed = seed;
  return { model, stream: bool(b, 'stream'), includeUsage, options, retrieval: parseRetrieval(b.retrieval) };
}

function parseRetrieval(v: unknown): RetrievalParams | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw badParam('retrieval', "'retrieval' must be an object.");
  // Keys as the client names them, so that errors point at 'retrieval.stride' and so on.
  const r = Object.fromEntries(Object.entries(v as Body).map(([k, x]) => [`retrieval.${k}`, x])) as Body;
  for (const k of Object.keys(r))
    if (!['corpus', 'stride', 'query_tokens', 'max_passage_tokens', 'rerank'].includes(k.slice(10))) throw badParam(k, `'${k}' is not a retrieval option.`);
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
  return out;
}

export function parseCompletion(body: unknown, maxTokensLimit: number, vocab: number): CompletionParams {
  const b = asBody(body);
  const p = b.prompt;
  let prompt: string | number[];
  if (typeof p === 'string') prompt = p;
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') prompt = p[0];
  else if (Array.isArray(p) && p.length > 0 && p.every((t) => Number.isInteger(t) && t >= 0 && t < vocab)) prompt = p as number[];
  else throw badParam('prompt', `'prompt' must be a string, or an array of token ids below ${vocab}.`);
  return { ...common(b, maxTokensLimit), prompt, echo: bool(b, 'echo') };
}

export function parseChat(body: unknown, maxTokensLimit: number): ChatParams {
  const b = asBody(body);
  const m = b.messages;
  if (!Array.isArray(m) || m.length === 0) throw badParam('messages', "'messages' must be a non-empty array.");
  m.forEach((msg, i) => {
    if (typeof msg !== 'object' || msg === null) throw badParam(`messages[${i}]`, `'messages[${i}]' must be an object.`);
    const { role, content } = msg as Body;
    if (typeof role !== 'string' || !['system', 'user', 'assistant', 'tool', 'developer'].includes(role))
      throw badParam(`messages[${i}].role`, `'messages[${i}].role' must be one of system, user, assistant, tool.`);
    if (content !== null && content !== undefined && typeof content !== 'string')
      throw badParam(`messages[${i}].content`, `'messages[${i}].content' must be a string or null.`);
  });
  for (const k of ['tools', 'documents'] as const)
    if (b[k] !== undefined && b[k] !== null && !Array.isArray(b[k])) throw badParam(k, `'${k}' must be an array.`);
  return {
    ...common(b, maxTokensLimit),
    messages: m as ChatMessage[],
    tools: (b.tools ?? undefined) as unknown[] | undefined,
    documents: (b.documents ?? undefined) as unknown[] | undefined,
  };
}

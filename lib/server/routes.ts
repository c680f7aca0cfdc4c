/**
 * The OpenAI-compatible routes as a Fastify plugin, so the same server can be mounted inside an
 * existing Fastify app (`app.register(jambaPlugin, { model })`) or run alone (`createServer`).
 */
import crypto from 'node:crypto';
import path from 'node:path';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { ChatTemplateError } from '../chat';
import { AbortError, InvalidArgumentError, JambaError } from '../errors';
import type { GenerateOptions, GenerationResult, TokenLogprob } from '../generation';
import type { Retrieval } from '../ralm/types';
import type { Retriever } from '../retrieval/types';
import type { JambaModel } from '../model';
import { Admission } from './admission';
import { ApiError } from './errors';
import { Metrics } from './metrics';
import { ChatParams, CompletionParams, RetrievalParams, parseChat, parseCompletion } from './validate';

export interface JambaPluginOptions {
  /** The model, or a promise of it: routes answer 503 until it resolves. */
  model: JambaModel | Promise<JambaModel>;
  /** The id clients use in `model` (default: the model folder's name). */
  modelName?: string;
  /** Generations running at once, batched together (default 16). */
  parallel?: number;
  /** Requests waiting for a slot before new ones get 429 (default 64). */
  queueSize?: number;
  /** Largest max_tokens a request may ask for (default 4096). */
  maxTokensLimit?: number;
  /** A chat template to use instead of the model's own. */
  chatTemplate?: string;
  /**
   * Corpora requests may retrieve from (In-Context RALM), by name: a request's
   * `"retrieval": { "corpus": NAME }` uses one (the only one when it names none).
   */
  corpora?: Record<string, Retriever | Promise<Retriever>>;
}

type Kind = 'completion' | 'chat';

const finishReason = (r: GenerationResult['finishReason']) => (r === 'length' ? 'length' : 'stop');

function completionLogprobs(lps: TokenLogprob[]) {
  let offset = 0;
  const text_offset: number[] = [];
  for (const lp of lps) {
    text_offset.push(offset);
    offset += lp.text.length;
  }
  return {
    tokens: lps.map((l) => l.text),
    token_logprobs: lps.map((l) => l.logprob),
    top_logprobs: lps.map((l) => Object.fromEntries(l.top.map((t) => [t.text, t.logprob]))),
    text_offset,
  };
}

function chatLogprobs(lps: TokenLogprob[]) {
  const bytes = (s: string) => Array.from(Buffer.from(s, 'utf8'));
  return {
    content: lps.map((l) => ({
      token: l.text, logprob: l.logprob, bytes: bytes(l.text),
      top_logprobs: l.top.map((t) => ({ token: t.text, logprob: t.logprob, bytes: bytes(t.text) })),
    })),
  };
}

/** What the response reports of each retrieval. */
const retrievalsBody = (rs: Retrieval[] | undefined) =>
  rs?.map((r) => ({ at_token: r.atToken, query: r.query, passage: r.passage && { id: r.passage.id, text: r.passage.text, score: r.passage.score ?? null } }));

export const jambaPlugin: FastifyPluginAsync<JambaPluginOptions> = async (app, opts) => {
  // Retrievers resolve in the background; a request for one still loading gets 503.
  const corpora = new Map<string, { retriever?: Retriever; error?: Error }>();
  for (const [name, r] of Object.entries(opts.corpora ?? {})) {
    const slot: { retriever?: Retriever; error?: Error } = {};
    corpora.set(name, slot);
    Promise.resolve(r).then((x) => { slot.retriever = x; }, (e: Error) => { slot.error = e; });
  }
  const retrieval = (p: RetrievalParams): GenerateOptions['retrieval'] => {
    const name = p.corpus ?? (corpora.size === 1 ? [...corpora.keys()][0]! : undefined);
    if (name === undefined)
      throw new ApiError(400, corpora.size === 0 ? 'This server has no corpus to retrieve from.' : `Name a corpus in 'retrieval.corpus': ${[...corpora.keys()].join(', ')}.`, 'invalid_request_error', 'invalid_value', 'retrieval.corpus');
    const slot = corpora.get(name);
    if (!slot) throw new ApiError(400, `There is no corpus '${name}'; this server has: ${[...corpora.keys()].join(', ') || 'none'}.`, 'invalid_request_error', 'invalid_value', 'retrieval.corpus');
    if (slot.error) throw new ApiError(503, `The corpus '${name}' failed to load: ${slot.error.message}`, 'server_error', 'corpus_load_failed');
    if (!slot.retriever) throw new ApiError(503, `The corpus '${name}' is still loading.`, 'server_error', 'corpus_loading');
    const o: NonNullable<GenerateOptions['retrieval']> = { retriever: slot.retriever };
    if (p.stride !== undefined) o.stride = p.stride;
    if (p.queryTokens !== undefined) o.queryTokens = p.queryTokens;
    if (p.maxPassageTokens !== undefined) o.maxPassageTokens = p.maxPassageTokens;
    if (p.rerank !== undefined) o.rerank = { k: p.rerank };
    return o;
  };

  const metrics = new Metrics();
  const admission = new Admission(opts.parallel ?? 16, opts.queueSize ?? 64);
  const maxTokensLimit = opts.maxTokensLimit ?? 4096;
  let model: JambaModel | undefined;
  let loadError: Error | undefined;
  let modelName = opts.modelName ?? 'jamba';
  const created = Math.floor(Date.now() / 1000);
  Promise.resolve(opts.model).then(
    (m) => {
      model = m;
      modelName = opts.modelName ?? path.basename(m.dir);
    },
    (e: Error) => {
      loadError = e;
    },
  );

  const ready = (): JambaModel => {
    if (model && !model.disposed) return model;
    if (loadError) throw new ApiError(503, `The model failed to load: ${loadError.message}`, 'server_error', 'model_load_failed');
    throw new ApiError(503, 'The model is still loading.', 'server_error', 'model_loading');
  };

  const send = (reply: FastifyReply, endpoint: string, status: number, body: unknown) => {
    metrics.request(endpoint, status);
    return reply.code(status).send(body);
  };

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    const endpoint = req.routeOptions.url ?? req.url;
    let api: ApiError;
    if (err instanceof ApiError) api = err;
    else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') api = new ApiError(413, 'The request body is too large.', 'invalid_request_error', 'body_too_large');
    else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') api = new ApiError(415, 'Send the request body as application/json.', 'invalid_request_error', 'unsupported_media_type');
    else if (err.statusCode === 400 || err instanceof SyntaxError) api = new ApiError(400, `The request body is not valid JSON: ${err.message}`, 'invalid_request_error', 'invalid_json');
    else if (err instanceof ChatTemplateError && err.reason === 'missing')
      api = new ApiError(400, 'This model has no chat template (it is a base model); use /v1/completions.', 'invalid_request_error', 'chat_template_missing');
    else if (err instanceof ChatTemplateError) api = new ApiError(400, err.message, 'invalid_request_error', 'chat_template_error');
    else if (err instanceof InvalidArgumentError) api = new ApiError(400, err.message, 'invalid_request_error', 'invalid_value');
    else if (err instanceof JambaError && err.code === 'disposed') api = new ApiError(503, 'The model is shutting down.', 'server_error', 'model_unavailable');
    else {
      req.log.error(err);
      api = new ApiError(500, `Internal error: ${err.message}`, 'server_error', 'internal_error');
    }
    if (reply.sent || reply.raw.headersSent) return;
    void send(reply, endpoint, api.status, api.body());
  });

  async function generate(kind: Kind, req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const endpoint = kind === 'chat' ? '/v1/chat/completions' : '/v1/completions';
    const t0 = performance.now();
    const m = ready();
    const params: CompletionParams | ChatParams =
      kind === 'chat' ? parseChat(req.body, maxTokensLimit) : parseCompletion(req.body, maxTokensLimit, m.config.vocabSize);
    if (params.model !== undefined && params.model !== modelName)
      throw new ApiError(404, `The model '${params.model}' does not exist; this server serves '${modelName}'.`, 'invalid_request_error', 'model_not_found', 'model');

    // A client that goes away aborts its generation, queued, prefilling or decoding.
    const ac = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) ac.abort();
    };
    reply.raw.on('close', onClose);

    let promptIds: number[];
    if (kind === 'chat') {
      const p = params as ChatParams;
      const text = m.renderChat(p.messages, { tools: p.tools, documents: p.documents, chatTemplate: opts.chatTemplate });
      promptIds = await m.tokenizer.encode(text, { addSpecialTokens: false });
    } else {
      const p = (params as CompletionParams).prompt;
      promptIds = typeof p === 'string' ? await m.tokenizer.encode(p) : p;
    }

    const genOptions: GenerateOptions = { ...params.options, signal: ac.signal };
    if (params.retrieval) genOptions.retrieval = retrieval(params.retrieval);

    await admission.acquire(ac.signal);
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${crypto.randomUUID()}`;
    const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
    const head = { id, created: Math.floor(Date.now() / 1000), model: modelName };
    try {
      const gen = m.generate(promptIds, genOptions);
      const usage = (r: GenerationResult) => ({ prompt_tokens: r.promptTokens, completion_tokens: r.tokens.length, total_tokens: r.promptTokens + r.tokens.length });
      const echo = kind === 'completion' && (params as CompletionParams).echo ? m.tokenizer.decode(promptIds) : '';
      let first = true;
      const firstText = () => {
        if (first) metrics.ttft.observe((performance.now() - t0) / 1000);
        first = false;
      };

      if (!params.stream) {
        let r: IteratorResult<string, GenerationResult>;
        do {
          r = await gen.next();
          if (!r.done && r.value) firstText();
        } while (!r.done);
        const res = r.value;
        metrics.promptTokens += res.promptTokens;
        metrics.completionTokens += res.tokens.length;
        const choice = kind === 'chat'
          ? { index: 0, message: { role: 'assistant', content: res.text }, logprobs: res.logprobs ? chatLogprobs(res.logprobs) : null, finish_reason: finishReason(res.finishReason) }
          : { index: 0, text: echo + res.text, logprobs: res.logprobs ? completionLogprobs(res.logprobs) : null, finish_reason: finishReason(res.finishReason) };
        const body: Record<string, unknown> = { ...head, object, choices: [choice], usage: usage(res) };
        if (res.retrievals) body.retrievals = retrievalsBody(res.retrievals);
        await send(reply, endpoint, 200, body);
        metrics.latency.observe((performance.now() - t0) / 1000);
        return;
      }

      // Server-sent events, ending with `data: [DONE]`.
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
      const chunkObject = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
      const event = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
      const delta = (text: string, finish: string | null, extra: Record<string, unknown> = {}) =>
        kind === 'chat'
          ? { ...head, object: chunkObject, choices: [{ index: 0, delta: text || finish === null ? { content: text, ...extra } : {}, logprobs: null, finish_reason: finish }] }
          : { ...head, object: chunkObject, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }] };
      if (kind === 'chat') event({ ...head, object: chunkObject, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
      else if (echo) event(delta(echo, null));
      let r: IteratorResult<string, GenerationResult>;
      for (;;) {
        r = await gen.next();
        if (r.done) break;
        if (r.value) {
          firstText();
          event(delta(r.value, null));
        }
      }
      const done = r.value;
      metrics.promptTokens += done.promptTokens;
      metrics.completionTokens += done.tokens.length;
      const last = delta('', finishReason(done.finishReason)) as Record<string, unknown>;
      if (done.retrievals) last.retrievals = retrievalsBody(done.retrievals);
      event(last);
      if (params.includeUsage) event({ ...head, object: chunkObject, choices: [], usage: usage(done) });
      res.end('data: [DONE]\n\n');
      metrics.request(endpoint, 200);
      metrics.latency.observe((performance.now() - t0) / 1000);
    } catch (e) {
      if (e instanceof AbortError || ac.signal.aborted) {
        metrics.request(endpoint, 499);
        if (!reply.raw.headersSent) reply.raw.destroy();
        else reply.raw.end();
        return;
      }
      if (reply.raw.headersSent) {
        // Mid-stream failure: report it in the stream, then close.
        reply.raw.end(`data: ${JSON.stringify(new ApiError(500, (e as Error).message, 'server_error').body())}\n\ndata: [DONE]\n\n`);
        metrics.request(endpoint, 500);
        return;
      }
      throw e;
    } finally {
      admission.release();
      reply.raw.off('close', onClose);
    }
  }

  app.post('/v1/completions', (req, reply) => generate('completion', req, reply));
  app.post('/v1/chat/completions', (req, reply) => generate('chat', req, reply));

  app.get('/v1/models', async (_req, reply) => {
    const data = model ? [{ id: modelName, object: 'model', created, owned_by: 'jamba-node' }] : [];
    return send(reply, '/v1/models', 200, { object: 'list', data });
  });

  app.get('/health', async (_req, reply) => {
    if (model && !model.disposed) return send(reply, '/health', 200, { status: 'ok', model: modelName });
    if (loadError) return send(reply, '/health', 503, { status: 'error', message: loadError.message });
    return send(reply, '/health', 503, { status: 'loading' });
  });

  app.get('/metrics', async (_req, reply) => {
    const s = model?.stats;
    metrics.request('/metrics', 200);
    return reply.code(200).header('content-type', 'text/plain; version=0.0.4').send(
      metrics.render({ active: admission.running, queued: admission.queued, passes: s?.passes ?? 0, prefixHits: s?.prefixCache.hits ?? 0 }));
  });
};

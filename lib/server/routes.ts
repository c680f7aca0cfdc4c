/**
 * The OpenAI-compatible routes as a Fastify plugin, so the same server can be mounted inside an
 * existing Fastify app (`app.register(jambaPlugin, { model })`) or run alone (`createServer`).
 */
import crypto from 'node:crypto';
import path from 'node:path';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { ChatOptions, ChatTemplateError } from '../chat';
import { AbortError, InvalidArgumentError, JambaError } from '../errors';
import type { GenerateOptions, GenerationResult, TokenLogprob } from '../generation';
import type { Retrieval } from '../ralm/types';
import type { Retriever } from '../retrieval/types';
import type { ToolCall } from '../tools';
import type { JambaModel } from '../model';
import { Admission } from './admission';
import { ApiError, badParam } from './errors';
import { RETRY_AFTER_SECONDS, ServerLifecycle, shuttingDown } from './lifecycle';
import { Metrics } from './metrics';
import { ChatParams, CompletionParams, RetrievalParams, parseChat, parseCompletion, parseEmbeddings } from './validate';

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
  /** A generation running longer than this is aborted with a 408 `request_timeout` (default: none). */
  requestTimeoutMs?: number;
  /** Browsers from this origin may call the API (CORS; default: none; '*' for any). */
  cors?: string;
  /**
   * Corpora requests may retrieve from (In-Context RALM), by name: a request's
   * `"retrieval": { "corpus": NAME }` uses one (the only one when it names none).
   */
  corpora?: Record<string, Retriever | Promise<Retriever>>;
  /**
   * The requests in flight and their drain: pass one to call `lifecycle.drain()` when the
   * process is told to stop (`createServer` makes one and exposes it as `app.drain`).
   */
  lifecycle?: ServerLifecycle;
}

type Kind = 'completion' | 'chat';

const finishReason = (r: GenerationResult['finishReason']) => (r === 'length' || r === 'tool_calls' ? r : 'stop');

/**
 * OpenAI's completion logprobs: tokens with their leading spaces, and each token's character
 * offset in the returned text (after `start` characters of echoed prompt).
 */
function completionLogprobs(lps: TokenLogprob[], start: number) {
  let offset = start;
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

/** OpenAI's chat logprobs: each token's text and exact bytes. */
function chatLogprobs(lps: TokenLogprob[]) {
  return {
    content: lps.map((l) => ({
      token: l.text, logprob: l.logprob, bytes: l.bytes,
      top_logprobs: l.top.map((t) => ({ token: t.text, logprob: t.logprob, bytes: t.bytes })),
    })),
  };
}

/** What the response reports of each retrieval. */
const retrievalsBody = (rs: Retrieval[] | undefined) =>
  rs?.map((r) => ({ at_token: r.atToken, query: r.query, passage: r.passage && { id: r.passage.id, text: r.passage.text, score: r.passage.score ?? null }, excluded: r.excluded }));

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
    if (p.exclude !== undefined) o.exclude = p.exclude;
    return o;
  };

  if (opts.cors !== undefined) {
    if (typeof opts.cors !== 'string' || !opts.cors) throw new InvalidArgumentError('cors must be an origin, or * for any');
    const origin = opts.cors;
    app.addHook('onRequest', async (_req, reply) => {
      void reply.header('access-control-allow-origin', origin);
      if (origin !== '*') void reply.header('vary', 'origin');
    });
    // Preflights, for every route.
    app.options('*', async (req, reply) => reply.code(204)
      .header('access-control-allow-methods', 'GET, POST, OPTIONS')
      .header('access-control-allow-headers', String(req.headers['access-control-request-headers'] ?? 'content-type, authorization'))
      .header('access-control-max-age', '600')
      .send());
  }

  const metrics = new Metrics();
  const lifecycle = opts.lifecycle ?? new ServerLifecycle();
  // While draining, only the probes and the metrics answer; everything else is sent elsewhere.
  app.addHook('onRequest', async (req) => {
    if (lifecycle.draining && !/^\/(health|metrics)(\/|\?|$)/.test(req.url)) throw shuttingDown();
  });
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
    if (api.status === 429) void reply.header('retry-after', '1');
    if (api.code === 'server_shutting_down') void reply.header('retry-after', String(RETRY_AFTER_SECONDS));
    void send(reply, endpoint, api.status, api.body());
  });

  async function generate(kind: Kind, req: FastifyRequest, reply: FastifyReply): Promise<void> {
    // A drain stops the request at its deadline: the client gets server_shutting_down.
    let shutdown = false;
    const ac = new AbortController();
    await lifecycle.track(() => run(kind, req, reply, ac, () => shutdown), () => {
      shutdown = true;
      ac.abort();
    });
  }

  async function run(kind: Kind, req: FastifyRequest, reply: FastifyReply, ac: AbortController, shutdown: () => boolean): Promise<void> {
    const endpoint = kind === 'chat' ? '/v1/chat/completions' : '/v1/completions';
    const t0 = performance.now();
    const m = ready();
    const params: CompletionParams | ChatParams =
      kind === 'chat' ? parseChat(req.body, maxTokensLimit, m.config.vocabSize) : parseCompletion(req.body, maxTokensLimit, m.config.vocabSize);
    if (params.model !== undefined && params.model !== modelName)
      throw new ApiError(404, `The model '${params.model}' does not exist; this server serves '${modelName}'.`, 'invalid_request_error', 'model_not_found', 'model');

    // A client that goes away aborts its generations, queued, prefilling or decoding.
    const onClose = () => {
      if (!reply.raw.writableFinished) ac.abort();
    };
    reply.raw.on('close', onClose);

    let prompts: number[][];
    const chatOptions: ChatOptions = {};
    if (kind === 'chat') {
      const p = params as ChatParams;
      Object.assign(chatOptions, { tools: p.tools, toolChoice: p.toolChoice, parallelToolCalls: p.parallelToolCalls, documents: p.documents });
      if (opts.chatTemplate !== undefined) chatOptions.chatTemplate = opts.chatTemplate;
      prompts = [await m.chatPromptIds(p.messages, chatOptions)];
    } else {
      prompts = await Promise.all((params as CompletionParams).prompts.map((p) => (typeof p === 'string' ? m.tokenizer.encode(p) : p)));
    }

    const longest = Math.max(...prompts.map((p) => p.length));
    if (longest + (params.options.maxTokens ?? 16) > m.contextLength)
      throw new ApiError(400, `The prompt (${longest} tokens) plus max_tokens (${params.options.maxTokens}) exceeds this model's context window of ${m.contextLength} tokens.`,
        'invalid_request_error', 'context_length_exceeded', kind === 'chat' ? 'messages' : 'prompt');

    const genOptions: GenerateOptions = { ...params.options, signal: ac.signal };
    // model.chat ends a reply at the model's chat stops unless the request gives `stop`.
    if (kind === 'chat' && (genOptions.stop?.length ?? 0) === 0) delete genOptions.stop;
    if (params.retrieval) genOptions.retrieval = retrieval(params.retrieval);

    let timedOut = false;
    const timer = opts.requestTimeoutMs ? setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, opts.requestTimeoutMs) : undefined;
    const timeoutError = () => new ApiError(408, `The generation ran past this server's request timeout of ${opts.requestTimeoutMs} ms and was stopped.`, 'timeout_error', 'request_timeout');
    try {
      await admission.acquire(ac.signal);
    } catch (e) {
      clearTimeout(timer);
      reply.raw.off('close', onClose);
      throw shutdown() ? shuttingDown() : timedOut ? timeoutError() : e;
    }
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${crypto.randomUUID()}`;
    const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
    const head = { id, created: Math.floor(Date.now() / 1000), model: modelName };
    const n = params.n;
    try {
      // Choice i continues prompt ⌊i / n⌋. With n > 1 the prompt is evaluated once and its state
      // kept in the prefix cache, from which every choice starts; choice j of a prompt samples
      // with seed + j, so a seeded request is reproducible and its choices differ. The prompt's
      // cached tokens are then those that prefill found cached: it is counted once, as the
      // prefill it was.
      const prefillCached = n > 1 ? await Promise.all(prompts.map((p) => m.prefill(p, { signal: ac.signal, promptCacheKey: genOptions.promptCacheKey }))) : undefined;
      const choices = prompts.flatMap((p) => Array.from({ length: n }, (_, j) => {
        const o = { ...genOptions };
        if (o.seed !== undefined) o.seed += j;
        // Streamed logprobs: each token's entry as it is chosen, sent with the next chunk.
        const c = { prompt: p, logprobs: o.logprobs !== undefined, pending: [] as TokenLogprob[], offset: 0, calls: [] as ToolCall[],
          gen: undefined as unknown as AsyncGenerator<string, GenerationResult, void> };
        if (params.stream && c.logprobs) o.onToken = (_t, lp) => lp && c.pending.push(lp);
        // A chat prompt was rendered once, above; each choice runs it. Tool calls stream as they close.
        c.gen = kind === 'chat' ? m.chatFrom(p, { ...o, ...chatOptions, onToolCall: (call) => c.calls.push(call) }) : m.generate(p, o);
        return c;
      }));
      const usage = (rs: GenerationResult[]) => {
        const first = rs.filter((_, i) => i % n === 0);
        const promptTokens = first.reduce((a, r) => a + r.promptTokens, 0);
        const cached = prefillCached ? prefillCached.reduce((a, c) => a + c, 0) : first.reduce((a, r) => a + r.cachedPromptTokens, 0);
        const completionTokens = rs.reduce((a, r) => a + r.tokens.length, 0);
        return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens, prompt_tokens_details: { cached_tokens: cached } };
      };
      const echoed = (i: number) => (kind === 'completion' && (params as CompletionParams).echo ? m.tokenizer.decode(choices[i]!.prompt) : '');
      let first = true;
      const firstText = () => {
        if (first) metrics.ttft.observe((performance.now() - t0) / 1000);
        first = false;
      };
      const count = (rs: GenerationResult[]) => {
        const u = usage(rs);
        metrics.promptTokens += u.prompt_tokens;
        metrics.cachedPromptTokens += u.prompt_tokens_details.cached_tokens;
        metrics.completionTokens += u.completion_tokens;
        for (const r of rs) metrics.success(finishReason(r.finishReason));
      };

      if (!params.stream) {
        const results = await Promise.all(choices.map(async ({ gen }) => {
          for (;;) {
            const r = await gen.next();
            if (r.done) return r.value;
            if (r.value) firstText();
          }
        }));
        count(results);
        const body: Record<string, unknown> = {
          ...head, object, usage: usage(results),
          choices: results.map((res, index) => {
            const c: Record<string, unknown> = kind === 'chat'
              ? { index, message: { role: 'assistant', content: res.toolCalls && !res.text ? null : res.text, ...(res.toolCalls ? { tool_calls: res.toolCalls } : {}) },
                logprobs: res.logprobs ? chatLogprobs(res.logprobs) : null, finish_reason: finishReason(res.finishReason) }
              : { index, text: echoed(index) + res.text, logprobs: res.logprobs ? completionLogprobs(res.logprobs.slice(0, res.tokens.length), echoed(index).length) : null, finish_reason: finishReason(res.finishReason) };
            if (res.retrievals && results.length > 1) c.retrievals = retrievalsBody(res.retrievals);
            return c;
          }),
        };
        if (results[0]!.retrievals) body.retrievals = retrievalsBody(results[0]!.retrievals);
        await send(reply, endpoint, 200, body);
        metrics.latency.observe((performance.now() - t0) / 1000);
        return;
      }

      // Server-sent events, each choice's pieces as they come (marked by index), ending with `data: [DONE]`.
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
      const chunkObject = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
      const event = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
      // A chunk carries the logprobs of the tokens chosen since the one before (offsets run on over the choice's text).
      const delta = (index: number, text: string, finish: string | null, lps: TokenLogprob[] = []) => {
        const c = choices[index]!;
        let logprobs: unknown = null;
        if (c.logprobs) {
          logprobs = kind === 'chat' ? chatLogprobs(lps) : completionLogprobs(lps, c.offset);
          for (const l of lps) c.offset += l.text.length;
        }
        return kind === 'chat'
          ? { ...head, object: chunkObject, choices: [{ index, delta: text || finish === null ? { content: text } : {}, logprobs, finish_reason: finish }] }
          : { ...head, object: chunkObject, choices: [{ index, text, logprobs, finish_reason: finish }] };
      };
      // Each tool call as one delta, as soon as its JSON closed (OpenAI's shape: index, id, type, name, arguments).
      const sentCalls = new Array<number>(choices.length).fill(0);
      const sendCalls = (index: number) => {
        const c = choices[index]!;
        for (; sentCalls[index]! < c.calls.length; sentCalls[index]!++) {
          const i = sentCalls[index]!;
          event({ ...head, object: chunkObject, choices: [{ index, delta: { tool_calls: [{ index: i, ...c.calls[i]! }] }, logprobs: null, finish_reason: null }] });
        }
      };
      const results = await Promise.all(choices.map(async ({ gen }, index) => {
        const c = choices[index]!;
        if (kind === 'chat') event({ ...head, object: chunkObject, choices: [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
        else if (echoed(index)) event(delta(index, echoed(index), null));
        c.offset = echoed(index).length;
        for (;;) {
          const r = await gen.next();
          sendCalls(index);
          if (r.done) {
            const last = delta(index, '', finishReason(r.value.finishReason), c.pending.splice(0)) as Record<string, unknown>;
            if (r.value.retrievals) last.retrievals = retrievalsBody(r.value.retrievals);
            event(last);
            return r.value;
          }
          if (!r.value) continue;
          firstText();
          event(delta(index, r.value, null, c.pending.splice(0)));
        }
      }));
      count(results);
      if (params.includeUsage) event({ ...head, object: chunkObject, choices: [], usage: usage(results) });
      res.end('data: [DONE]\n\n');
      metrics.request(endpoint, 200);
      metrics.latency.observe((performance.now() - t0) / 1000);
    } catch (e) {
      const aborted = e instanceof AbortError || ac.signal.aborted;
      ac.abort();  // the other choices stop too
      // Stopped by the server (its request timeout, or a drain's deadline): the client is told why.
      const stoppedBy = timedOut ? timeoutError() : shutdown() ? shuttingDown() : undefined;
      if (stoppedBy) {
        metrics.request(endpoint, stoppedBy.status);
        if (reply.raw.headersSent) reply.raw.end(`data: ${JSON.stringify(stoppedBy.body())}\n\ndata: [DONE]\n\n`);
        else throw stoppedBy;
        return;
      }
      if (aborted) {
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
      clearTimeout(timer);
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

  app.get('/v1/models/:id', async (req, reply) => {
    const { id } = req.params as { id: string };
    if (!model || id !== modelName) throw new ApiError(404, `The model '${id}' does not exist; this server serves '${modelName}'.`, 'invalid_request_error', 'model_not_found', 'model');
    return send(reply, '/v1/models/{id}', 200, { id: modelName, object: 'model', created, owned_by: 'jamba-node' });
  });

  // Embeddings: the final hidden states (after the last norm) of every token, averaged and scaled
  // to unit length. Jamba is a language model, not a trained embedder: good enough to compare
  // texts of one domain, no match for a model trained for retrieval.
  app.post('/v1/embeddings', async (req, reply) => {
    const m = ready();
    const { inputs, model: asked } = parseEmbeddings(req.body, m.config.vocabSize);
    if (asked !== undefined && asked !== modelName) throw new ApiError(404, `The model '${asked}' does not exist; this server serves '${modelName}'.`, 'invalid_request_error', 'model_not_found', 'model');
    const ids = await Promise.all(inputs.map((x) => (typeof x === 'string' ? m.tokenizer.encode(x) : x)));
    for (const [i, x] of ids.entries())
      if (x.length > m.contextLength) throw new ApiError(400, `input[${i}] has ${x.length} tokens, more than the context window of ${m.contextLength}.`, 'invalid_request_error', 'context_length_exceeded', 'input');
    const H = m.config.hiddenSize;
    const data = await Promise.all(ids.map(async (x, index) => {
      const h = await m.hiddenStates(x);
      const v = new Float64Array(H);
      for (let t = 0; t < x.length; t++) for (let c = 0; c < H; c++) v[c]! += h[t * H + c]!;
      const norm = Math.hypot(...v) || 1;
      return { object: 'embedding', index, embedding: Array.from(v, (y) => y / norm) };
    }));
    const tokens = ids.reduce((a, x) => a + x.length, 0);
    return send(reply, '/v1/embeddings', 200, { object: 'list', data, model: modelName, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  });

  // llama.cpp's server: text to token ids and back.
  app.post('/tokenize', async (req, reply) => {
    const m = ready();
    const b = req.body as { content?: unknown; add_special?: unknown } | null;
    if (!b || typeof b !== 'object' || typeof b.content !== 'string') throw badParam('content', "'content' must be a string.");
    if (b.add_special !== undefined && typeof b.add_special !== 'boolean') throw badParam('add_special', "'add_special' must be a boolean.");
    return send(reply, '/tokenize', 200, { tokens: await m.tokenizer.encode(b.content, { addSpecialTokens: b.add_special === true }) });
  });
  app.post('/detokenize', async (req, reply) => {
    const m = ready();
    const b = req.body as { tokens?: unknown } | null;
    const t = b && typeof b === 'object' ? b.tokens : undefined;
    if (!Array.isArray(t) || t.some((x) => !Number.isInteger(x) || x < 0 || x >= m.tokenizer.vocabSize))
      throw badParam('tokens', `'tokens' must be an array of token ids below ${m.tokenizer.vocabSize}.`);
    return send(reply, '/detokenize', 200, { content: m.tokenizer.decode(t as number[]) });
  });

  app.get('/health', async (_req, reply) => {
    if (model && !model.disposed) return send(reply, '/health', 200, { status: 'ok', model: modelName });
    if (loadError) return send(reply, '/health', 503, { status: 'error', message: loadError.message });
    return send(reply, '/health', 503, { status: 'loading' });
  });

  // Kubernetes-style probes. Live: the process can work (loading counts; a failed load does not,
  // so an orchestrator restarts it). Ready: it can take requests now (not loading, draining or broken).
  app.get('/health/live', async (_req, reply) => {
    if (loadError) return send(reply, '/health/live', 503, { status: 'error', message: loadError.message });
    return send(reply, '/health/live', 200, { status: 'live' });
  });
  app.get('/health/ready', async (_req, reply) => {
    const status = loadError ? 'error' : lifecycle.draining ? 'draining' : !model ? 'loading' : model.disposed ? 'stopped' : 'ready';
    const body: Record<string, unknown> = { status, model: modelName };
    if (loadError) body.message = loadError.message;
    return send(reply, '/health/ready', status === 'ready' ? 200 : 503, body);
  });

  app.get('/metrics', async (_req, reply) => {
    const s = model && !model.disposed ? model.stats : undefined;
    metrics.request('/metrics', 200);
    // On the CPU, states are made per sequence: the server's generation slots are the pool.
    const slots = s?.sequences.slots ?? admission.parallel;
    const stateUsage = Math.min(1, (s?.sequences.live ?? 0) / slots);
    return reply.code(200).header('content-type', 'text/plain; version=0.0.4').send(metrics.render({
      modelName, running: admission.running, waiting: admission.queued, passes: s?.passes ?? 0, prefixHits: s?.prefixCache.hits ?? 0, stateUsage,
    }));
  });
};

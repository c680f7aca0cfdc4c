/**
 * The `jamba` command: generate, eval, inspect. Results go to stdout (with --json, nothing else
 * does); logs and errors go to stderr.
 */
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { ChatMessage, ChatTemplateError } from '../chat';
import { windowedNll } from '../evaluate';
import { JambaError } from '../errors';
import { GenerateOptions, resolveGenerateOptions } from '../generation';
import { JambaModel, loadModel } from '../model';
import { defaultModelDir, packageVersion } from '../paths';
import { createServer } from '../server';
import { UsageError, loadTemplate, log, num, open, print, progressBar, readStdin } from './common';
import { evaluateRalm, evaluatedPart, index, openCorpus, ralm, ralmEvalFlags } from './ralm';
import { trainPrompt } from './train';
import type { Bm25Retriever } from '../retrieval/bm25';

const HELP: Record<string, string> = {
  main: `Usage: jamba <command> [options]

Commands:
  generate [PROMPT]   continue a prompt (default model: the embedded Shakespeare model)
  eval FILE           mean next-token NLL and perplexity of a text file, in windows
                      (with --ralm --corpus PATH: with and without In-Context RALM)
  ralm PROMPT         generate with passages retrieved from a corpus (In-Context RALM)
  index               build a BM25 index of a corpus and save it, for ralm, eval and serve
  inspect             config, layer schedule, parameter counts and memory of a model
  chat                talk with a chat model, keeping the conversation's history
  serve               an OpenAI-compatible HTTP server (completions, chat, models, health, metrics)
  train-prompt        prompt tuning through the frozen model, saved as a PEFT adapter

Run 'jamba <command> --help' for a command's options; 'jamba --version' prints the version.`,
  generate: `Usage: jamba generate [PROMPT] [options]

Streams the continuation of PROMPT (or of standard input when PROMPT is '-' or absent and stdin
is not a terminal) to stdout. Logs go to stderr.

Options:
  --model DIR              checkpoint folder (default: the embedded model)
  --max-tokens N           most new tokens (default 256)
  --temperature T          0 is greedy (default 0.8)
  --top-k K                keep the K most likely tokens (default 0: off)
  --top-p P                nucleus sampling threshold (default 1: off)
  --min-p P                drop tokens below P × the top probability (default 0: off)
  --repetition-penalty R   penalise tokens already present (default 1: off)
  --seed S                 sampler seed (same seed, same text)
  --stop STR               stop at this string (repeatable)
  --experts-int8           quantize MoE experts to int8 at load
  --json                   print one JSON object with text, tokens and timings instead
  -h, --help`,
  eval: `Usage: jamba eval FILE [options]

Tokenizes FILE (no special tokens), optionally keeps the part from --from-fraction on, and scores
every token in independent windows of BOS + --window tokens (the last window may be shorter).
Reports the token-level perplexity (comparable within one tokenizer) and the word-level one,
exp(Σ NLL / words), words counted as AI21's eval_lm.py counts them (the spaces of the evaluated
text), which is what the In-Context RALM paper reports.

With --ralm, scores it instead under the In-Context RALM protocol (windows of --window tokens
sliding by --stride, each scoring the tokens no earlier one did), once with a passage retrieved
from --corpus before each window and once without, on the same tokens, and reports both.
The tiny-Shakespeare setup (corpus: the training 90%, text: the validation 10%):
  jamba eval --ralm --corpus data/tinyshakespeare.txt --corpus-to-fraction 0.9 \
             --from-fraction 0.9 data/tinyshakespeare.txt

Options:
  --model DIR                checkpoint folder (default: the embedded model)
  --window N                 tokens per window after the BOS (default 512; 1024 with --ralm)
  --max-tokens N             score at most N tokens
  --full-windows-only        drop a final partial window
  --from-fraction F          start at token floor(F × n) (0.9 gives the tiny-Shakespeare validation split)
  --ralm                     evaluate with and without retrieval
  --corpus PATH              (with --ralm) a file, a folder or a saved index (from 'jamba index')
  --corpus-to-fraction F     (with --ralm) index only each corpus file's tokens before floor(F × n)
  --layout L                 'bos' (default: BOS, passage, '\\n', text) or 'paper' (eval_lm.py's input exactly)
  --stride N                 tokens between retrievals (default 4)
  --query-tokens N           query length in tokens (default 32)
  --max-passage-tokens N     (default 256)
  --rerank K                 rerank the top K passages with the model (default: off)
  --exclude-titles FILE      never retrieve passages with these titles (one a line)
  --exclude-ids FILE         never retrieve passages with these ids (one a line)
  --exclude-overlap          never retrieve a passage sharing --overlap-words words in a row with FILE
  --overlap-words N          (default 32)
  --experts-int8             quantize MoE experts to int8 at load
  --json                     print one JSON object
  -h, --help`,
  ralm: `Usage: jamba ralm --corpus PATH [PROMPT] [options]

Generates the continuation of PROMPT with In-Context RALM: every --stride tokens the last
--query-tokens tokens query a BM25 index of the corpus, and the best passage goes in front of
the text. The passages used are listed on stderr (or in the JSON with --json).

Options:
  --corpus PATH              a file, a folder or a saved index (.json from 'jamba index')
  --model DIR                checkpoint folder (default: the embedded model)
  --stride N                 generated tokens between retrievals (default 4)
  --query-tokens N           (default 32)
  --max-passage-tokens N     (default 256)
  --rerank K                 rerank the top K passages with the model (default: off)
  --max-tokens N             most new tokens (default 256)
  --temperature T            0 is greedy (default 0.8)
  --top-p P, --top-k K, --seed S, --stop STR (repeatable)
  --experts-int8             quantize MoE experts to int8 at load
  --json                     print one JSON object with text, tokens and the retrievals
  -h, --help`,
  index: `Usage: jamba index --corpus PATH --out FILE [options]
       jamba index --corpus PATH --elasticsearch URL --index NAME [options]
       jamba index --corpus PATH --opensearch URL --index NAME [options]

Cuts the corpus into passages and indexes them for BM25 as Pyserini does (Lucene's English
analyzer and scoring). The built-in index is one file that 'jamba ralm', 'jamba eval --ralm' and
'jamba serve --corpus' load instead of indexing again. With --elasticsearch or --opensearch the
passages go to a new index of that cluster, created with the settings that make its scores
Pyserini's (docs/ralm.md); the client package must be installed. A corpus is files of UTF-8
text, .jsonl records { "id", "title"?, "text" } and DPR .tsv passage files, or folders of them; it
is read as a stream.

Options:
  --corpus PATH       a file or a folder (repeatable)
  --out FILE          where to write the index (one file, searched in place when loaded; it is
                      written under a temporary name and appears only when complete)
  --words N           words per passage (default 100)
  --memory MB         postings held in memory while building before a sorted run is written to
                      disk (default 256)
  --exact-lengths     score with exact passage lengths instead of Lucene's one-byte norms (not
                      Pyserini's scores; --lucene-norms, the default, is accepted)
  --elasticsearch URL load into an Elasticsearch cluster (needs @elastic/elasticsearch)
  --opensearch URL    load into an OpenSearch cluster (needs @opensearch-project/opensearch)
  --index NAME        the cluster index to create (it must not exist)
  --shards N          its primary shards (default 1; with more, searches use DFS statistics)
  -h, --help`,
  chat: `Usage: jamba chat [options]

Interactive chat with a model that ships a chat template. Type a message and press Enter; the
reply streams as it is generated. Ctrl-C stops a reply; /reset clears the history; /exit quits.

Options:
  --model DIR              checkpoint folder (default: the embedded model)
  --chat-template FILE     a Jinja chat template to use instead of the model's
  --system TEXT            a system message opening the conversation
  --max-tokens N           most tokens per reply (default 512)
  --temperature T          (default 0.7)
  --top-p P                (default 0.95)
  --seed S
  --experts-int8           quantize MoE experts to int8 at load
  -h, --help`,
  serve: `Usage: jamba serve [options]

Serves POST /v1/completions, POST /v1/chat/completions (both with stream: true), GET /v1/models,
GET /health (503 while loading), the probes GET /health/live and GET /health/ready, and GET /metrics
(Prometheus, with vLLM's metric names too). On SIGTERM or SIGINT it drains: not ready, new requests
refused with 503 and Retry-After, requests in flight given --shutdown-timeout seconds to finish
(then stopped with server_shutting_down); then the model is freed and the process exits 0.

Options:
  --model DIR              checkpoint folder (default: the embedded model)
  --host HOST              address to bind (default 127.0.0.1: this machine only)
  --port N                 (default 8080)
  --parallel N             generations batched together at once (default 16)
  --queue N                requests waiting for a slot before 429 (default 64)
  --max-body BYTES         largest request body (default 1048576)
  --name ID                the model id clients send (default: the folder's name)
  --chat-template FILE     a Jinja chat template to use instead of the model's
  --corpus PATH            a corpus (file, folder or saved index) requests may retrieve from,
                           with "retrieval": { "corpus": "default" } (repeatable as NAME=PATH)
  --request-timeout S      stop a generation running longer than S seconds (408 request_timeout)
  --cors ORIGIN            let browsers from ORIGIN call the API ('*': any; default: none)
  --keep-serving           if the model fails to load, keep answering 503 instead of exiting
  --shutdown-timeout S     on SIGTERM, how long requests in flight may run on (default 25; keep the
                           orchestrator's grace period a few seconds longer)
  --experts-int8           quantize MoE experts to int8 at load
  --device D               cpu (default), cuda, or auto (CUDA when a GPU and a CUDA build are present)
  --max-sequences N        CUDA: sequences alive at once, the state pool's slots (default 16)
  --context-length N       CUDA: the most positions a sequence may hold (default 4096)
  -h, --help`,
  inspect: `Usage: jamba inspect [options]

Options:
  --model DIR      checkpoint folder (default: the embedded model)
  --experts-int8   load with int8 experts and report memory after quantization
  --json           print one JSON object
  -h, --help`,
};

async function generate(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      model: { type: 'string' }, 'max-tokens': { type: 'string' }, temperature: { type: 'string' }, 'top-k': { type: 'string' },
      'top-p': { type: 'string' }, 'min-p': { type: 'string' }, 'repetition-penalty': { type: 'string' }, seed: { type: 'string' },
      stop: { type: 'string', multiple: true }, 'experts-int8': { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return print(HELP.generate!);
  if (positionals.length > 1) throw new UsageError('give the prompt as one argument (quote it)');
  let prompt = positionals[0];
  if (prompt === undefined || prompt === '-') {
    if (prompt === undefined && process.stdin.isTTY) throw new UsageError('no prompt: pass one as an argument or on standard input');
    prompt = await readStdin();
  }
  const opts: GenerateOptions = {
    maxTokens: num(values['max-tokens'], 'max-tokens', true), temperature: num(values.temperature, 'temperature'),
    topK: num(values['top-k'], 'top-k', true), topP: num(values['top-p'], 'top-p'), minP: num(values['min-p'], 'min-p'),
    repetitionPenalty: num(values['repetition-penalty'], 'repetition-penalty'), seed: num(values.seed, 'seed', true),
    stop: values.stop,
  };
  for (const k of Object.keys(opts) as Array<keyof GenerateOptions>) if (opts[k] === undefined) delete opts[k];
  checkGenerateOptions(opts);
  const model = await open(values.model, values['experts-int8'], !!values.json);
  const ac = new AbortController();
  const onSigint = () => ac.abort();
  process.once('SIGINT', onSigint);
  try {
    const t0 = performance.now();
    const it = model.generate(prompt, { ...opts, signal: ac.signal });
    let first = 0, text = '';
    for (;;) {
      const r = await it.next();
      if (r.done) {
        const ms = performance.now() - t0;
        if (values.json) {
          process.stdout.write(`${JSON.stringify({ text: r.value.text, tokens: r.value.tokens, finishReason: r.value.finishReason,
            promptTokens: r.value.promptTokens, ms: Math.round(ms), timeToFirstPieceMs: Math.round(first) })}\n`);
        } else {
          if (!text.endsWith('\n')) process.stdout.write('\n');
          log(`jamba: ${r.value.tokens.length} tokens in ${ms.toFixed(0)} ms (${((r.value.tokens.length * 1000) / ms).toFixed(0)} tok/s), finish: ${r.value.finishReason}`);
        }
        return 0;
      }
      if (!first) first = performance.now() - t0;
      text += r.value;
      if (!values.json) process.stdout.write(r.value);
    }
  } finally {
    process.off('SIGINT', onSigint);
    await model.dispose();
  }
}

async function evaluate(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      model: { type: 'string' }, window: { type: 'string' }, 'max-tokens': { type: 'string' }, 'from-fraction': { type: 'string' },
      'full-windows-only': { type: 'boolean' }, 'experts-int8': { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      ralm: { type: 'boolean' }, ...ralmEvalFlags,
    },
  });
  if (values.help) return print(HELP.eval!);
  if (positionals.length !== 1) throw new UsageError('give exactly one text file');
  const file = positionals[0]!;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  if (values.ralm) {
    if (values['full-windows-only']) throw new UsageError('--full-windows-only does not go with --ralm (its windows slide)');
    return evaluateRalm(values, text, file);
  }
  for (const k of Object.keys(ralmEvalFlags) as Array<keyof typeof ralmEvalFlags>)
    if (values[k] !== undefined) throw new UsageError(`--${k} goes with --ralm`);
  const frac = num(values['from-fraction'], 'from-fraction') ?? 0;
  if (frac < 0 || frac >= 1) throw new UsageError('--from-fraction must be in [0, 1)');
  const window = num(values.window, 'window', true), maxTokens = num(values['max-tokens'], 'max-tokens', true);
  const model = await open(values.model, values['experts-int8'], !!values.json);
  try {
    const t0 = performance.now();
    const { ids, evaluated } = await evaluatedPart(model, text, frac, maxTokens);
    const r = await windowedNll(model, ids, {
      window, fullWindowsOnly: values['full-windows-only'] ?? false, text: evaluated,
      onProgress: values.json || !process.stderr.isTTY ? undefined : (done, total) => process.stderr.write(`\rjamba: scored ${done}/${total} tokens`),
    });
    const ms = performance.now() - t0;
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ file, ...r, ms: Math.round(ms) })}\n`);
    } else {
      if (process.stderr.isTTY) process.stderr.write('\n');
      process.stdout.write(`nll ${r.nll.toFixed(6)}  perplexity ${r.perplexity.toFixed(4)}  tokens ${r.tokens}  ` +
                           `word perplexity ${r.wordPerplexity!.toFixed(4)}  words ${r.words}  windows ${r.windows}\n`);
      log(`jamba: ${((r.tokens + r.windows) / (ms / 1000)).toFixed(0)} tok/s`);
    }
    return 0;
  } finally {
    await model.dispose();
  }
}

const fmtBytes = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`);

function version(): string {
  return `jamba-node ${packageVersion()} (node ${process.version}, ${process.platform}-${process.arch})`;
}

async function inspect(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, options: { model: { type: 'string' }, 'experts-int8': { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) return print(HELP.inspect!);
  const model = await open(values.model, values['experts-int8'], true);
  try {
    const info = model.inspect();
    if (values.json) {
      process.stdout.write(`${JSON.stringify(info)}\n`);
      return 0;
    }
    const c = info.config;
    const lines = [
      `model        ${info.dir}`,
      `parameters   ${info.parameters.total.toLocaleString('en-US')} total, ${info.parameters.active.toLocaleString('en-US')} active per token`,
      `shape        hidden ${c.hiddenSize}, ${c.numHiddenLayers} layers, vocab ${c.vocabSize}, intermediate ${c.intermediateSize}`,
      `attention    ${c.numAttentionHeads} heads / ${c.numKeyValueHeads} kv heads of ${c.headDim}, every ${c.attnLayerPeriod} layers from ${c.attnLayerOffset}`,
      `mamba        d_inner ${c.mambaDInner}, d_state ${c.mambaDState}, d_conv ${c.mambaDConv}, dt_rank ${c.mambaDtRank}, conv bias ${c.mambaConvBias}, proj bias ${c.mambaProjBias}`,
      `moe          ${c.numExperts} experts, top-${c.numExpertsPerTok}, every ${c.expertLayerPeriod} layers from ${c.expertLayerOffset}`,
      `layers       ${info.layers.map((l) => `${l.mixer === 'attention' ? 'A' : 'M'}${l.feedForward === 'moe' ? '+moe' : ''}`).join(' ')}`,
      `checkpoint   ${Object.entries(info.checkpointBytesByDtype).map(([k, v]) => `${k} ${fmtBytes(v)}`).join(', ')}`,
      `in memory    ${Object.entries(info.loadedBytesByDtype).map(([k, v]) => `${k} ${fmtBytes(v)}`).join(', ')}${info.expertsInt8 ? ' (int8 experts)' : ''}`,
      `device       ${info.device}, ${info.threads} threads`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  } finally {
    await model.dispose();
  }
}

async function chat(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' }, 'chat-template': { type: 'string' }, system: { type: 'string' }, 'max-tokens': { type: 'string' },
      temperature: { type: 'string' }, 'top-p': { type: 'string' }, seed: { type: 'string' }, 'experts-int8': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return print(HELP.chat!);
  const chatTemplate = loadTemplate(values['chat-template']);
  const model = await open(values.model, values['experts-int8'], false);
  const history: ChatMessage[] = values.system ? [{ role: 'system', content: values.system }] : [];
  // Fail now, not after the first message, when the model cannot chat.
  try {
    model.renderChat([...history, { role: 'user', content: '' }], { chatTemplate });
  } catch (e) {
    await model.dispose();
    if (e instanceof ChatTemplateError && e.reason === 'missing')
      throw new UsageError(`${model.dir} has no chat template (it is a base model): pass one with --chat-template FILE, or use 'jamba generate'`);
    throw e;
  }
  const opts = {
    chatTemplate, maxTokens: num(values['max-tokens'], 'max-tokens', true) ?? 512, temperature: num(values.temperature, 'temperature') ?? 0.7,
    topP: num(values['top-p'], 'top-p') ?? 0.95, seed: num(values.seed, 'seed', true),
  };
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  let replying: AbortController | null = null;
  rl.on('SIGINT', () => (replying ? replying.abort() : rl.close()));
  try {
    rl.setPrompt('> ');
    rl.prompt();
    for await (const line of rl) {
      const text = line.trim();
      if (text === '/exit') break;
      if (text === '/reset') {
        history.splice(values.system ? 1 : 0);
        process.stdout.write('(history cleared)\n');
      } else if (text) {
        history.push({ role: 'user', content: text });
        replying = new AbortController();
        let reply = '';
        try {
          for await (const piece of model.chat(history, { ...opts, signal: replying.signal })) {
            reply += piece;
            process.stdout.write(piece);
          }
        } catch (e) {
          if ((e as { code?: string }).code !== 'aborted') throw e;
          process.stdout.write(' [stopped]');
        }
        replying = null;
        history.push({ role: 'assistant', content: reply });
        process.stdout.write('\n');
      }
      rl.prompt();
    }
  } finally {
    rl.close();
    await model.dispose();
  }
  return 0;
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, parallel: { type: 'string' }, queue: { type: 'string' },
      'max-body': { type: 'string' }, name: { type: 'string' }, 'chat-template': { type: 'string' }, 'experts-int8': { type: 'boolean' },
      corpus: { type: 'string', multiple: true }, 'request-timeout': { type: 'string' }, cors: { type: 'string' }, 'keep-serving': { type: 'boolean' },
      'shutdown-timeout': { type: 'string' }, device: { type: 'string' }, 'max-sequences': { type: 'string' }, 'context-length': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return print(HELP.serve!);
  // Every option is checked before the model starts loading.
  const port = num(values.port, 'port', true) ?? 8080;
  if (port < 0 || port > 65535) throw new UsageError('--port must be in [0, 65535]');
  const positive = (v: string | undefined, name: string) => {
    const n = num(v, name, true);
    if (n !== undefined && n < 1) throw new UsageError(`--${name} must be at least 1`);
    return n;
  };
  const timeout = num(values['request-timeout'], 'request-timeout');
  if (timeout !== undefined && !(timeout > 0)) throw new UsageError('--request-timeout must be a positive number of seconds');
  const device = values.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda' && device !== 'auto') throw new UsageError(`--device must be cpu, cuda or auto, got '${device}'`);
  const maxSequences = positive(values['max-sequences'], 'max-sequences');
  const contextLength = positive(values['context-length'], 'context-length');
  const shutdownTimeout = num(values['shutdown-timeout'], 'shutdown-timeout') ?? 25;
  if (!(shutdownTimeout >= 0)) throw new UsageError('--shutdown-timeout must be a number of seconds, 0 or more');
  if (values.cors !== undefined && values.cors === '') throw new UsageError('--cors needs an origin (or * for any)');
  const server = {
    modelName: values.name, parallel: positive(values.parallel, 'parallel'), queueSize: positive(values.queue, 'queue'),
    bodyLimit: positive(values['max-body'], 'max-body'), chatTemplate: loadTemplate(values['chat-template']),
    requestTimeoutMs: timeout === undefined ? undefined : Math.round(timeout * 1000), cors: values.cors,
  };
  const specs: Array<[string, string]> = [];
  for (const spec of values.corpus ?? []) {
    const eq = spec.indexOf('=');
    const name = eq > 0 ? spec.slice(0, eq) : 'default';
    if (specs.some(([n]) => n === name)) throw new UsageError(`two corpora are named '${name}': give them as NAME=PATH`);
    specs.push([name, eq > 0 ? spec.slice(eq + 1) : spec]);
  }
  const host = values.host ?? '127.0.0.1';
  const dir = values.model ?? defaultModelDir();
  const model = loadModel(dir, {
    expertsInt8: values['experts-int8'] ?? false, onProgress: progressBar(false), device,
    ...(maxSequences !== undefined ? { maxSequences } : {}), ...(contextLength !== undefined ? { contextLength } : {}),
  });
  model.catch(() => undefined);  // reported below
  // Corpora index in the background too; requests naming one answer 503 until it is ready.
  const corpora: Record<string, Promise<Bm25Retriever>> = {};
  for (const [name, p] of specs) {
    corpora[name] = openCorpus([p], false);
    corpora[name].catch((e: Error) => log(`jamba: corpus '${name}' failed to load: ${e.message}`));
  }
  const app = await createServer({ corpora, model, ...server });
  let address: string;
  try {
    address = await app.listen({ port, host });
  } catch (e) {
    await app.close();
    await (await model.catch(() => undefined))?.dispose();
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new UsageError(`port ${port} on ${host} is already in use (--port picks another)`);
    if (code === 'EACCES') throw new UsageError(`no permission to listen on port ${port} of ${host}`);
    throw e;
  }
  log(`jamba: listening on ${address} (loading ${dir}; /health answers 503 until it is ready)`);
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  let failed: Error | undefined;
  await Promise.race([stopped, model.then(() => log('jamba: model ready'), (e: Error) => {
    if (!values['keep-serving']) failed = e;
    else log(`jamba: the model failed to load: ${e.message} (serving 503s, --keep-serving)`);
  })]);
  if (!failed) {
    await stopped;
    log(`jamba: draining (requests in flight have ${shutdownTimeout} s to finish)`);
    const { completed, stopped: cut } = await app.drain({ timeoutMs: shutdownTimeout * 1000 });
    log(`jamba: drained: ${completed} request(s) finished, ${cut} stopped at the deadline; shutting down`);
  } else {
    log('jamba: the model failed to load; shutting down');
  }
  await app.close();
  await (await model.catch(() => undefined))?.dispose();
  if (failed) throw failed;
  return 0;
}

/** Sampling and length options, checked before any model loads (vocabulary-dependent checks come later). */
function checkGenerateOptions(o: GenerateOptions): void {
  try {
    resolveGenerateOptions(o, Number.MAX_SAFE_INTEGER);
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^(\w+)/, (k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`));
  }
}

/** `--temperature -1` is the option and its value: negative numbers are joined to the option before parsing. */
function joinNegativeValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!, next = argv[i + 1];
    if (a.startsWith('--') && !a.includes('=') && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = joinNegativeValues(argv);
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);  // `jamba generate … | head` is not an error
  });
  try {
    switch (cmd) {
      case 'generate': return await generate(rest);
      case 'eval': return await evaluate(rest);
      case 'inspect': return await inspect(rest);
      case 'chat': return await chat(rest);
      case 'serve': return await serve(rest);
      case 'ralm': return await ralm(rest, HELP.ralm!);
      case 'index': return await index(rest, HELP.index!);
      case 'train-prompt': return await trainPrompt(rest);
      case '-h': case '--help': case 'help': return print(HELP.main!);
      case '-v': case '--version': case 'version': return print(version());
      case undefined:
        log(HELP.main!);
        return 2;
      default: throw new UsageError(`unknown command ${JSON.stringify(cmd)}\n\n${HELP.main}`);
    }
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (e as { code?: string }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      log(`jamba: ${(e as Error).message}`);
      return 2;
    }
    if (e instanceof JambaError) {
      log(`jamba: ${e.name}: ${e.message}`);
      return e.code === 'aborted' ? 130 : 1;
    }
    throw e;
  }
}

/**
 * Reading a retrieval corpus as a stream of passages, so a corpus larger than memory can be
 * indexed: one file, a folder (every regular file below it, hidden ones skipped, in name order),
 * a list of paths, or texts given in memory.
 *
 * - Text files are read 1 MiB at a time and cut into passages of `words` words as they come.
 * - `.jsonl` files hold one record a line, `{ "id", "title"?, "text" }` (or Pyserini's
 *   `{ "id", "contents" }`); `.tsv` files are DPR's passage files (a header naming `id`, `text`
 *   and `title` columns, fields optionally in double quotes). A record is a passage under its own
 *   id; one longer than `words` words is cut, its pieces numbered `id#0`, `id#1`, ...
 * - Each file must be UTF-8 text: a NUL byte or an invalid UTF-8 sequence means a binary file and
 *   is refused by name, as is a corpus with no words at all.
 *
 * A passage's `source` names its file relative to the folder given (or the file's own name), so
 * passage ids never expose the absolute paths of the machine that indexed them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { AbortError, CorpusError, InvalidArgumentError } from '../errors';
import { ChunkOptions, ResolvedChunkOptions, chunkWords, fitTokens, resolveChunkOptions, wordSpans } from './chunk';

/** What a corpus can be built from. */
export type CorpusSource = string | string[] | Array<string | { text: string; title?: string; source?: string }>;

/** One passage of a corpus, as the indexes store it. */
export interface CorpusPassage {
  id: string;
  text: string;
  title?: string;
  /** The document it came from: a file name relative to the corpus path given, or `text[i]`. */
  source: string;
}

const READ_BYTES = 1 << 20;

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (e.name.startsWith('.')) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Paths as files, each with the name passages cite: a folder stands for every regular file below it. */
export function corpusFiles(paths: string[]): Array<{ file: string; name: string }> {
  const files: Array<{ file: string; name: string }> = [];
  for (const p of paths) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      throw new CorpusError('does not exist', p);
    }
    if (st.isDirectory()) {
      const inside = listFiles(p);
      if (inside.length === 0) throw new CorpusError('is a folder with no files', p);
      const base = path.dirname(path.resolve(p));
      files.push(...inside.map((f) => ({ file: f, name: path.relative(base, path.resolve(f)).split(path.sep).join('/') })));
    } else if (st.isFile()) {
      files.push({ file: p, name: path.basename(p) });
    } else {
      throw new CorpusError('is neither a file nor a folder', p);
    }
  }
  return files;
}

/** The file's text in pieces of about 1 MiB, refusing binary content. */
async function* textPieces(file: string, signal?: AbortSignal): AsyncGenerator<string> {
  let fd: fs.promises.FileHandle;
  try {
    fd = await fs.promises.open(file, 'r');
  } catch (e) {
    throw new CorpusError(`cannot read: ${(e as Error).message}`, file);
  }
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const buf = Buffer.alloc(READ_BYTES);
  try {
    for (;;) {
      if (signal?.aborted) throw new AbortError();
      const { bytesRead } = await fd.read(buf, 0, buf.length, null);
      const bytes = buf.subarray(0, bytesRead);
      if (bytes.includes(0)) throw new CorpusError('is a binary file (it contains NUL bytes), not text', file);
      let text: string;
      try {
        text = bytesRead ? decoder.decode(bytes, { stream: true }) : decoder.decode();
      } catch {
        throw new CorpusError('is not UTF-8 text', file);
      }
      if (text) yield text;
      if (!bytesRead) return;
    }
  } finally {
    await fd.close();
  }
}

/** The whole text of a file (small files only: queries, titles, evaluation texts). */
export async function readTextFile(file: string): Promise<string> {
  let out = '';
  for await (const piece of textPieces(file)) out += piece;
  return out;
}

async function* lines(file: string, signal?: AbortSignal): AsyncGenerator<[string, number]> {
  let rest = '', n = 0;
  for await (const piece of textPieces(file, signal)) {
    const parts = (rest + piece).split('\n');
    rest = parts.pop()!;
    for (const l of parts) yield [l.replace(/\r$/, ''), ++n];
  }
  if (rest) yield [rest.replace(/\r$/, ''), ++n];
}

/** Passages of `words` words from a stream of text, each as soon as it is complete. */
async function* streamedPassages(pieces: AsyncIterable<string>, o: ResolvedChunkOptions): AsyncGenerator<string> {
  let pending = '';
  for await (const piece of pieces) {
    pending += piece;
    const spans = wordSpans(pending, o.maxWordChars);
    // A word touching the end may go on in the next piece.
    const whole = spans.length && spans[spans.length - 1]![1] === pending.length ? spans.length - 1 : spans.length;
    const groups = Math.floor(whole / o.words);
    if (groups === 0) continue;
    yield* chunkWords(pending.slice(0, spans[groups * o.words - 1]![1]), o);
    pending = pending.slice(spans[groups * o.words]?.[0] ?? pending.length);
  }
  yield* chunkWords(pending, o);
}

function unquote(field: string): string {
  return field.length >= 2 && field.startsWith('"') && field.endsWith('"') ? field.slice(1, -1).replace(/""/g, '"') : field;
}

interface RawRecord {
  id: string;
  text: string;
  title?: string;
}

async function* jsonlRecords(file: string, signal?: AbortSignal): AsyncGenerator<RawRecord> {
  for await (const [line, n] of lines(file, signal)) {
    if (!line.trim()) continue;
    let r: { id?: unknown; title?: unknown; text?: unknown; contents?: unknown };
    try {
      r = JSON.parse(line) as typeof r;
    } catch (e) {
      throw new CorpusError(`line ${n} is not JSON: ${(e as Error).message}`, file);
    }
    const text = r?.text ?? r?.contents;
    if (r === null || typeof r !== 'object' || (typeof r.id !== 'string' && typeof r.id !== 'number') || typeof text !== 'string' ||
        (r.title !== undefined && r.title !== null && typeof r.title !== 'string'))
      throw new CorpusError(`line ${n} is not a record { "id", "title"?, "text" } (or { "id", "contents" })`, file);
    const rec: RawRecord = { id: String(r.id), text };
    if (typeof r.title === 'string') rec.title = r.title;
    yield rec;
  }
}

async function* tsvRecords(file: string, signal?: AbortSignal): AsyncGenerator<RawRecord> {
  let cols: { id: number; text: number; title: number } | null = null;
  for await (const [line, n] of lines(file, signal)) {
    if (!line.trim()) continue;
    const f = line.split('\t').map(unquote);
    if (!cols) {
      cols = { id: f.indexOf('id'), text: f.indexOf('text'), title: f.indexOf('title') };
      if (cols.id < 0 || cols.text < 0) throw new CorpusError('has no header line naming its "id" and "text" columns (DPR\'s passage format)', file);
      continue;
    }
    if (f.length <= Math.max(cols.id, cols.text, cols.title)) throw new CorpusError(`line ${n} has ${f.length} fields, fewer than its header`, file);
    const rec: RawRecord = { id: f[cols.id]!, text: f[cols.text]! };
    if (cols.title >= 0 && f[cols.title]) rec.title = f[cols.title]!;
    yield rec;
  }
}

async function* recordPassages(records: AsyncIterable<RawRecord>, source: string, options: ChunkOptions, o: ResolvedChunkOptions): AsyncGenerator<CorpusPassage> {
  for await (const r of records) {
    const pieces: string[] = [];
    for (const p of chunkWords(r.text, o)) pieces.push(...(await fitTokens(p, options, o)));
    for (let i = 0; i < pieces.length; i++) {
      const p: CorpusPassage = { id: pieces.length === 1 ? r.id : `${r.id}#${i}`, text: pieces[i]!, source };
      if (r.title !== undefined) p.title = r.title;
      yield p;
    }
  }
}

async function* filePassages(file: string, name: string, options: ChunkOptions, o: ResolvedChunkOptions, signal?: AbortSignal): AsyncGenerator<CorpusPassage> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl') return yield* recordPassages(jsonlRecords(file, signal), name, options, o);
  if (ext === '.tsv') return yield* recordPassages(tsvRecords(file, signal), name, options, o);
  let i = 0;
  for await (const passage of streamedPassages(textPieces(file, signal), o))
    for (const text of await fitTokens(passage, options, o)) yield { id: `${name}#${i++}`, text, source: name };
}

/**
 * The passages of a corpus, in order. A string is a path; an array of strings is a list of paths
 * when `paths` is true, else a list of texts. Refuses, by name, a corpus with no passage at all.
 */
export async function* corpusPassages(source: CorpusSource, paths: boolean, options: ChunkOptions = {}, signal?: AbortSignal): AsyncGenerator<CorpusPassage> {
  if (typeof source === 'string') return yield* corpusPassages([source], true, options, signal);
  if (!Array.isArray(source) || source.length === 0) throw new InvalidArgumentError('the corpus must be a path, or a non-empty array of paths or texts');
  const o = resolveChunkOptions(options);
  let count = 0;
  if (paths) {
    if (source.some((s) => typeof s !== 'string')) throw new InvalidArgumentError('corpus paths must be strings');
    const files = corpusFiles(source as string[]);
    for (const { file, name } of files)
      for await (const p of filePassages(file, name, options, o, signal)) {
        count++;
        yield p;
      }
    if (count === 0) throw new CorpusError('has no text to index (every document is empty or whitespace)', files.length === 1 ? files[0]!.file : `the corpus of ${files.length} files`);
    return;
  }
  const docs = source.map((d, i) => {
    if (typeof d === 'string') return { source: `text[${i}]`, text: d };
    if (d === null || typeof d !== 'object' || typeof d.text !== 'string') throw new InvalidArgumentError(`corpus[${i}] must be a string or { text, title? }`);
    if (d.title !== undefined && typeof d.title !== 'string') throw new InvalidArgumentError(`corpus[${i}].title must be a string`);
    return { source: d.source ?? `text[${i}]`, text: d.text, title: d.title };
  });
  for (const d of docs) {
    let i = 0;
    for (const piece of chunkWords(d.text, o))
      for (const text of await fitTokens(piece, options, o)) {
        const p: CorpusPassage = { id: `${d.source}#${i++}`, text, source: d.source };
        if (d.title !== undefined) p.title = d.title;
        count++;
        yield p;
      }
  }
  if (count === 0) throw new CorpusError('has no text to index (every document is empty or whitespace)', docs.length === 1 ? docs[0]!.source : `the corpus of ${docs.length} documents`);
}

/**
 * Reading a retrieval corpus: one file, a folder (every regular file below it, hidden ones
 * skipped, in name order), a list of paths, or texts given in memory. Each document must be UTF-8
 * text: a NUL byte or an invalid UTF-8 sequence means a binary file and is refused by name, as
 * is a corpus with no words at all.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CorpusError, InvalidArgumentError } from '../errors';

export interface CorpusDocument {
  /** The document's name: its path, or `text[i]` for texts given in memory. */
  source: string;
  text: string;
  title?: string;
}

/** What a corpus can be built from. */
export type CorpusSource = string | string[] | Array<string | { text: string; title?: string; source?: string }>;

const decoder = new TextDecoder('utf-8', { fatal: true });

/** The file's text, refusing binary content. */
export function readTextFile(file: string): string {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new CorpusError(`cannot read: ${(e as Error).message}`, file);
  }
  if (buf.includes(0)) throw new CorpusError('is a binary file (it contains NUL bytes), not text', file);
  try {
    return decoder.decode(buf);
  } catch {
    throw new CorpusError('is not UTF-8 text', file);
  }
}

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

/** Paths as files: a folder stands for every regular file below it. */
export function corpusFiles(paths: string[]): string[] {
  const files: string[] = [];
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
      files.push(...inside);
    } else if (st.isFile()) {
      files.push(p);
    } else {
      throw new CorpusError('is neither a file nor a folder', p);
    }
  }
  return files;
}

/**
 * The documents of a corpus. A string is a path; an array of strings is a list of paths when
 * `paths` is true, else a list of texts.
 */
export function readCorpus(source: CorpusSource, paths: boolean): CorpusDocument[] {
  if (typeof source === 'string') return readCorpus([source], true);
  if (!Array.isArray(source) || source.length === 0) throw new InvalidArgumentError('the corpus must be a path, or a non-empty array of paths or texts');
  if (paths) {
    if (source.some((s) => typeof s !== 'string')) throw new InvalidArgumentError('corpus paths must be strings');
    return corpusFiles(source as string[]).map((f) => ({ source: f, text: readTextFile(f) }));
  }
  return source.map((d, i) => {
    if (typeof d === 'string') return { source: `text[${i}]`, text: d };
    if (d === null || typeof d !== 'object' || typeof d.text !== 'string') throw new InvalidArgumentError(`corpus[${i}] must be a string or { text, title? }`);
    if (d.title !== undefined && typeof d.title !== 'string') throw new InvalidArgumentError(`corpus[${i}].title must be a string`);
    const doc: CorpusDocument = { source: d.source ?? `text[${i}]`, text: d.text };
    if (d.title !== undefined) doc.title = d.title;
    return doc;
  });
}

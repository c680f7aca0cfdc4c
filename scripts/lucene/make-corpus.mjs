// Makes the retrieval fixtures' corpus of real, mixed text (run once; the output is committed):
// IN.tsv lines: `id TAB text` with backslash, line feed, carriage return and tab escaped.
// 100-word passages from Debian's copyright files (names in many scripts, e-mail addresses, URLs,
// version numbers, ©, licence prose) and from the READMEs of this repository's npm dependencies
// (Markdown, code identifiers, emoji), deduplicated, in a fixed order; and 200 queries of 32 words
// taken from other passages of the same sources. Writes test/fixtures/retrieval/{corpus,queries}.tsv.
//
//   node scripts/lucene/make-corpus.mjs
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const out = path.join(root, 'test', 'fixtures', 'retrieval');
const escape = (s) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t');
const sorted = (xs) => [...xs].sort();

const sources = [];
for (const pkg of sorted(fs.readdirSync('/usr/share/doc'))) {
  const f = path.join('/usr/share/doc', pkg, 'copyright');
  if (fs.existsSync(f)) sources.push([`debian/${pkg}`, fs.readFileSync(f, 'utf8')]);
}
const nm = path.join(root, 'node_modules');
for (const name of sorted(fs.readdirSync(nm))) {
  const dirs = name.startsWith('@') ? sorted(fs.readdirSync(path.join(nm, name))).map((d) => `${name}/${d}`) : [name];
  for (const d of dirs) {
    const f = path.join(nm, d, 'README.md');
    if (fs.existsSync(f)) sources.push([`npm/${d}`, fs.readFileSync(f, 'utf8')]);
  }
}

// 100-word passages, as the retriever chunks text (words: runs of non-space; text kept as written).
function passages(text) {
  const words = [...text.matchAll(/\S+/g)];
  const out = [];
  for (let i = 0; i < words.length; i += 100) {
    const a = words[i], b = words[Math.min(words.length, i + 100) - 1];
    out.push(text.slice(a.index, b.index + b[0].length));
  }
  return out;
}

const seen = new Set();
const corpus = [], spare = [];
for (const [name, text] of sources) {
  passages(text).forEach((p, i) => {
    const h = createHash('sha1').update(p).digest('hex');
    if (seen.has(h)) return;
    seen.add(h);
    // Every third passage of a copyright file is enough (licence prose repeats); READMEs all.
    const keep = name.startsWith('npm/') || parseInt(h.slice(0, 8), 16) % 3 === 0;
    (keep ? corpus : spare).push([`${name}#${i}`, p]);
  });
}
// Queries: 32 words from passages left out of the corpus, spread over them.
const queries = [];
for (let q = 0; q < 200; q++) {
  const [, text] = spare[Math.floor((q * spare.length) / 200)];
  const words = text.split(/\s+/).filter(Boolean);
  queries.push([`q${q}`, words.slice(Math.max(0, words.length - 32)).join(' ')]);
}
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'corpus.tsv'), corpus.map(([id, t]) => `${id}\t${escape(t)}`).join('\n') + '\n');
fs.writeFileSync(path.join(out, 'queries.tsv'), queries.map(([id, t]) => `${id}\t${escape(t)}`).join('\n') + '\n');
console.log(`${corpus.length} passages, ${queries.length} queries`);

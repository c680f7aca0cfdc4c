/**
 * Lucene's StandardTokenizer (UAX #29 word breaks with Lucene's emoji, Southeast Asian, Han,
 * Hiragana, Katakana and Hangul rules), run from its own scanner tables
 * (third_party/lucene/standard-tokenizer.json, extracted from Lucene 8 by scripts/lucene): the
 * same character classes, the same DFA, the same longest match, the same token types. So a text
 * splits here exactly as Lucene splits it, symbols and emoji included, whatever Unicode version
 * this JavaScript engine has. Like Lucene's, the scanner sees at most 255 UTF-16 units from a
 * token's start (its buffer): a longer token is cut there and the scan goes on from the cut.
 */
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../paths';

interface Tables {
  classes: number;
  start: number;
  cmap: number[];
  trans: number[];
  accepting: number[];
  action: number[];
  typeOfAction: Record<string, number>;
  tokenTypes: string[];
  lower: number[];
}

/** Lucene's scanner buffer: no token is longer. */
export const MAX_TOKEN_CHARS = 255;

let loaded: {
  classes: number; start: number; trans: Int16Array; accepting: Uint8Array; emits: Int8Array;
  bmp: Uint8Array; astralStarts: Int32Array; astralClasses: Uint8Array; lower: Map<number, number>;
} | undefined;

function tables() {
  if (loaded) return loaded;
  const t = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'third_party', 'lucene', 'standard-tokenizer.json'), 'utf8')) as Tables;
  // The character map: a byte per BMP code point, runs above it.
  const bmp = new Uint8Array(0x10000), starts: number[] = [], classes: number[] = [];
  for (let i = 0; i < t.cmap.length; i += 2) {
    const from = t.cmap[i]!, cls = t.cmap[i + 1]!, to = i + 2 < t.cmap.length ? t.cmap[i + 2]! : 0x110000;
    if (from < 0x10000) bmp.fill(cls, from, Math.min(to, 0x10000));
    if (to > 0x10000) {
      starts.push(Math.max(from, 0x10000));
      classes.push(cls);
    }
  }
  // Per state: the token type its action emits (-1: the match is skipped), or -2 if it is not accepting.
  const emits = Int8Array.from(t.action, (a, s) => ((t.accepting[s]! & 1) === 0 ? -2 : t.typeOfAction[String(a)] ?? -1));
  const lower = new Map<number, number>();
  for (let i = 0; i < t.lower.length; i += 2) lower.set(t.lower[i]!, t.lower[i + 1]!);
  loaded = {
    classes: t.classes, start: t.start, trans: Int16Array.from(t.trans), accepting: Uint8Array.from(t.accepting), emits,
    bmp, astralStarts: Int32Array.from(starts), astralClasses: Uint8Array.from(classes), lower,
  };
  return loaded;
}

function classOf(cp: number): number {
  const t = loaded!;
  if (cp < 0x10000) return t.bmp[cp]!;
  let lo = 0, hi = t.astralStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (t.astralStarts[mid]! <= cp) lo = mid;
    else hi = mid - 1;
  }
  return t.astralClasses[lo]!;
}

/** The tokens of Lucene's StandardTokenizer, in order. */
export function standardTokens(text: string): string[] {
  const t = tables();
  const out: string[] = [];
  let pos = 0;
  while (pos < text.length) {
    const start = pos, limit = Math.min(text.length, start + MAX_TOKEN_CHARS);
    let state = t.start, marked = -1, emit = -1, cur = start;
    if (t.emits[state]! > -2) [marked, emit] = [cur, t.emits[state]!];
    while (cur < limit) {
      const cp = text.codePointAt(cur)!;
      const width = cp > 0xffff ? 2 : 1;
      if (cur + width > limit) break;
      const next = t.trans[state * t.classes + classOf(cp)]!;
      if (next < 0) break;
      state = next;
      cur += width;
      if (t.accepting[state]! & 1) {
        marked = cur;
        emit = t.emits[state]!;
        if (t.accepting[state]! & 8) break;
      }
    }
    // Every character matches at least the catch-all rule, so a match always ends past `start`.
    if (marked <= start) marked = start + (text.codePointAt(start)! > 0xffff ? 2 : 1);
    if (emit >= 0) out.push(text.slice(start, marked));
    pos = marked;
  }
  return out;
}

/** Java's Character.toLowerCase, code point by code point (what Lucene's LowerCaseFilter does). */
export function javaLowerCase(s: string): string {
  // ASCII lower-cases alike in both languages (only A-Z change).
  if (/^[\x00-\x7f]*$/.test(s)) return s.toLowerCase();
  const t = tables();
  let out = '';
  let changed = false;
  for (let i = 0; i < s.length;) {
    const cp = s.codePointAt(i)!;
    const l = t.lower.get(cp);
    if (l !== undefined) changed = true;
    out += String.fromCodePoint(l ?? cp);
    i += cp > 0xffff ? 2 : 1;
  }
  return changed ? out : s;
}

/**
 * Text analysis for BM25, as Lucene's EnglishAnalyzer does it (the analyzer of Pyserini's
 * indexes, which the In-Context RALM paper retrieved from): the standard tokenizer (Unicode word
 * boundaries, UAX #29), the English possessive filter, lower-casing, Lucene's 33-word English
 * stop set, and Porter stemming. 'standard' stops after lower-casing (Lucene's StandardAnalyzer
 * with no stop words).
 *
 * The tokenizer follows UAX #29's word rules for the characters text in European scripts uses:
 * letters, marks, digits and connector punctuation ('_') form words; a word continues across
 * one MidLetter or apostrophe-like character between letters ("can't", "l'amour"), one MidNum
 * character between digits ("3,141.59"), and a full stop or apostrophe between letters or digits
 * ("U.S.A", "1.5"); Han ideographs and Hiragana are a token each, a run of Katakana is one token;
 * tokens are cut at Lucene's 255 characters. Emoji and Southeast Asian dictionary segmentation,
 * which StandardTokenizer also handles, are not emulated.
 */
import porterStem from 'stemmer';

export type AnalyzerName = 'english' | 'standard';

/** Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET. */
export const LUCENE_ENGLISH_STOP_WORDS: ReadonlySet<string> = new Set([
  'a', 'an', 'and', 'are', 'as', 'at', 'be', 'but', 'by', 'for', 'if', 'in', 'into', 'is', 'it', 'no', 'not', 'of', 'on', 'or',
  'such', 'that', 'the', 'their', 'then', 'there', 'these', 'they', 'this', 'to', 'was', 'will', 'with',
]);

/** Lucene's maxTokenLength, in UTF-16 code units (Java chars). */
const MAX_TOKEN_CHARS = 255;

/** UAX #29 word-break classes, as far as the tokenizer needs them. */
const enum C { Other, Letter, Digit, Extend, Single, Katakana, MidLetter, MidNum, MidNumLet }

const MID_LETTER = ':\u00b7\u0387\u055f\u05f4\u2027\ufe13\ufe55\uff1a';
const MID_NUM = ',;\u037e\u0589\u060c\u060d\u066c\u07f8\u2044\ufe10\ufe14\ufe50\ufe54\uff0c\uff1b';
const MID_NUM_LET = ".'\u2018\u2019\u2024\ufe52\uff07\uff0e";

function classOf(ch: string): C {
  if (/[\p{sc=Han}\p{sc=Hiragana}]/u.test(ch)) return C.Single;
  if (/[\p{sc=Katakana}\u30fc\uff70]/u.test(ch)) return C.Katakana;
  if (/\p{L}/u.test(ch)) return C.Letter;
  if (/\p{Nd}/u.test(ch)) return C.Digit;
  if (/[\p{M}\p{Pc}]/u.test(ch)) return C.Extend;
  if (MID_NUM_LET.includes(ch)) return C.MidNumLet;
  if (MID_LETTER.includes(ch)) return C.MidLetter;
  if (MID_NUM.includes(ch)) return C.MidNum;
  return C.Other;
}

const ascii = Uint8Array.from({ length: 128 }, (_, cp) => classOf(String.fromCharCode(cp)));
const others = new Map<number, C>();

function classify(cp: number): C {
  if (cp < 128) return ascii[cp]! as C;
  let c = others.get(cp);
  if (c === undefined) others.set(cp, (c = classOf(String.fromCodePoint(cp))));
  return c;
}

const inWord = (c: C) => c === C.Letter || c === C.Digit || c === C.Extend;

/** Can `mid` join the word part ending in `before` to the one starting with `after`? */
function joins(mid: C, before: C, after: C): boolean {
  const letters = (before === C.Letter || before === C.Extend) && after === C.Letter;
  const digits = before === C.Digit && after === C.Digit;
  if (mid === C.MidNumLet) return letters || digits;
  if (mid === C.MidLetter) return letters;
  if (mid === C.MidNum) return digits;
  return false;
}

/** The tokens of StandardTokenizer, in order. */
export function standardTokens(text: string): string[] {
  const out: string[] = [];
  const push = (start: number, end: number, alnum: boolean) => {
    if (!alnum) return;  // connectors or marks alone make no token
    for (let i = start; i < end; i += MAX_TOKEN_CHARS) out.push(text.slice(i, Math.min(end, i + MAX_TOKEN_CHARS)));
  };
  const at = (i: number) => (i < text.length ? classify(text.codePointAt(i)!) : C.Other);
  const width = (i: number) => (text.codePointAt(i)! > 0xffff ? 2 : 1);
  let i = 0;
  while (i < text.length) {
    const c = at(i);
    if (c === C.Single) {
      push(i, i + width(i), true);
      i += width(i);
    } else if (c === C.Katakana) {
      const start = i;
      while (i < text.length && at(i) === C.Katakana) i += width(i);
      push(start, i, true);
    } else if (inWord(c)) {
      const start = i;
      let alnum = false, last = c;
      for (;;) {
        for (let k = at(i); i < text.length && inWord(k); k = at(i)) {
          alnum ||= k !== C.Extend;
          last = k;
          i += width(i);
        }
        const mid = at(i);
        if (i + 1 < text.length && joins(mid, last, at(i + width(i)))) i += width(i);
        else break;
      }
      push(start, i, alnum);
    } else {
      i += width(i);
    }
  }
  return out;
}

/** EnglishPossessiveFilter: a trailing 's (any of Lucene's three apostrophes) goes. */
function dropPossessive(t: string): string {
  if (t.length >= 2 && (t.endsWith('s') || t.endsWith('S'))) {
    const a = t[t.length - 2];
    if (a === "'" || a === '\u2019' || a === '\uff07') return t.slice(0, -2);
  }
  return t;
}

/** Java's Character.toLowerCase per code point (JS lower-cases 'İ' to two characters). */
const lower = (t: string) => (t.includes('\u0130') ? t.replace(/\u0130/g, 'i') : t).toLowerCase();

const MEMO_LIMIT = 1 << 19;
const english = new Map<string, string | null>();

/** One token through the English filters: its term, or null for a stop word. */
function englishTerm(token: string): string | null {
  let term = english.get(token);
  if (term === undefined) {
    const l = lower(dropPossessive(token));
    term = !l || LUCENE_ENGLISH_STOP_WORDS.has(l) ? null : porterStem(l);
    if (english.size >= MEMO_LIMIT) english.clear();
    english.set(token, term);
  }
  return term;
}

/** The terms a text is indexed (and queried) under. */
export function analyze(text: string, analyzer: AnalyzerName = 'english'): string[] {
  const tokens = standardTokens(text);
  if (analyzer === 'standard') return tokens.map(lower);
  const out: string[] = [];
  for (const t of tokens) {
    const term = englishTerm(t);
    if (term !== null) out.push(term);
  }
  return out;
}

/** Each distinct term of a text with its count, in first-seen order. */
export function termCounts(text: string, analyzer: AnalyzerName = 'english'): Map<string, number> {
  const counts = new Map<string, number>();
  for (const t of analyze(text, analyzer)) counts.set(t, (counts.get(t) ?? 0) + 1);
  return counts;
}

export function isAnalyzerName(v: unknown): v is AnalyzerName {
  return v === 'english' || v === 'standard';
}

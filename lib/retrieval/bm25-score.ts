/**
 * BM25 as Lucene's BM25Similarity scores it (Lucene 8 and later, so Pyserini/Anserini), in its
 * float32 steps:
 *
 *   idf(t)   = (float) ln(1 + (N − df + 0.5) / (df + 0.5))
 *   w(t)     = (float) c_q(t) · idf(t)        the query's bag of words: a term boosted by its count
 *   inv(d)   = 1 / (k1 · ((1 − b) + b · dl(d) / avgdl))      one float per norm byte
 *   s(t, d)  = w − w / (1 + f(t, d) · inv(d))                 (= w·f / (f + k1·(1 − b + b·dl/avgdl)))
 *   score(d) = (float) Σ_t s(t, d), summed in double          (Lucene's WANDScorer)
 *
 * with every operation rounded to float as Java's float arithmetic does (Math.fround), so scores
 * equal Lucene's bit for bit and ties break as Lucene breaks them, by passage order. dl is the
 * number of terms the analyzer kept (title and text, stop words removed), avgdl the exact mean,
 * stored as Lucene stores it: in one byte (SmallFloat.intToByte4: exact below 24, then 4
 * significant bits), unless the index keeps exact lengths (`luceneNorms: false`, not Pyserini's).
 * Both index kinds (memory and disk) score through this one function.
 */

const f32 = Math.fround;

export interface Bm25Params {
  k1: number;
  b: number;
  /** dl in Lucene's one-byte encoding, as Pyserini's scores have it (default true); false: exact lengths. */
  luceneNorms: boolean;
}

/** A block of one term's postings: passage numbers ascending, with the term's frequency and the passage's length. */
export interface Postings {
  docs: Int32Array;
  tfs: Int32Array;
  lens: Int32Array;
}

/** A block as the index lists it: its passage range, read only when needed. */
export interface BlockRef {
  first: number;
  last: number;
  load(): Postings;
}

/** One term's postings: its document frequency and its blocks, in passage order. */
export interface TermPostings {
  df: number;
  blocks: BlockRef[];
}

/** Postings per block: small enough that a skip passes over most of a long list unread. */
export const BLOCK_POSTINGS = 4096;

export interface CollectionStats {
  /** Passages with at least one term (Lucene's docCount: a passage with none is not counted). */
  n: number;
  /** Σ dl over passages. */
  sumLength: number;
}

const NUM_FREE_VALUES = 24;

/** Lucene's SmallFloat.longToInt4 / int4ToLong. */
function longToInt4(i: number): number {
  const bits = 32 - Math.clz32(i);
  if (bits < 4) return i;
  const shift = bits - 4;
  return ((i >>> shift) & 0x07) | ((shift + 1) << 3);
}
function int4ToLong(i: number): number {
  const bits = i & 0x07, shift = (i >>> 3) - 1;
  return shift === -1 ? bits : (bits | 0x08) * 2 ** shift;
}

/** Lucene's one-byte norm of a length (SmallFloat.intToByte4), 0–255. */
export function normByte(dl: number): number {
  return dl < NUM_FREE_VALUES ? dl : NUM_FREE_VALUES + longToInt4(dl - NUM_FREE_VALUES);
}

/** The length a norm byte stands for (SmallFloat.byte4ToInt). */
export function byteToLength(b: number): number {
  return b < NUM_FREE_VALUES ? b : NUM_FREE_VALUES + int4ToLong(b - NUM_FREE_VALUES);
}

/** dl as Lucene reads it back from its one-byte norm. */
export function luceneLength(dl: number): number {
  return byteToLength(normByte(dl));
}

/** Lucene's idf, as a float. */
export function idf(n: number, df: number): number {
  return f32(Math.log(1 + (n - df + 0.5) / (df + 0.5)));
}

/** Lucene's avgdl: the exact mean length, as a float. */
export const avgLength = (stats: CollectionStats) => f32(stats.sumLength / stats.n);

/** 1 / (k1 · ((1 − b) + b · dl / avgdl)) in Java's float steps. */
export function inverseNorm(p: Bm25Params, dl: number, avgdl: number): number {
  const k1 = f32(p.k1), b = f32(p.b);
  return f32(1 / f32(k1 * f32(f32(1 - b) + f32(f32(b * dl) / avgdl))));
}

/** One term's part of a passage's score: w − w / (1 + f · inv), in Java's float steps. */
export const termScore = (w: number, freq: number, inv: number) => f32(w - f32(w / f32(1 + f32(freq * inv))));

export interface ScoredDoc {
  doc: number;
  score: number;
}

/** A term's place in its postings while the query's lists are merged. */
class Cursor {
  private b = -1;
  private block: Postings | null = null;
  private i = 0;
  /** The current passage (Infinity once past the end). */
  doc = -1;

  constructor(readonly term: number, readonly weight: number, private readonly blocks: BlockRef[], private readonly norms: Float32Array | null) {}

  /** Moves to the first passage ≥ target (never backwards), skipping unread blocks that end before it. */
  seek(target: number): void {
    if (this.doc >= target) return;
    if (!this.block || this.block.docs[this.block.docs.length - 1]! < target) {
      do this.b++;
      while (this.b < this.blocks.length && this.blocks[this.b]!.last < target);
      if (this.b >= this.blocks.length) {
        this.doc = Infinity;
        return;
      }
      this.block = this.blocks[this.b]!.load();
      this.i = 0;
    }
    const d = this.block.docs;
    let lo = this.i, hi = d.length - 1;  // the first index with d ≥ target: the block's last passage is ≥ target
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (d[mid]! < target) lo = mid + 1;
      else hi = mid;
    }
    this.i = lo;
    this.doc = d[lo]!;
  }

  /** The term's part of the score of the current passage (`norms`: Lucene's cache of inverse norms by length). */
  score(p: Bm25Params, avgdl: number): number {
    const dl = this.block!.lens[this.i]!;
    const inv = this.norms ? this.norms[normByte(dl)]! : inverseNorm(p, dl, avgdl);
    return termScore(this.weight, this.block!.tfs[this.i]!, inv);
  }
}

/**
 * The k best passages for the query terms (term → count in the query), best first; ties go to
 * the lower passage number (Lucene's order). Document at a time with MaxScore pruning (Turtle and
 * Flood, 1995), as Lucene does: a term adds at most its weight (c_q · idf: the tf part is below
 * 1), so once k passages are held, the terms whose weights together cannot lift a passage past
 * the k-th score are only looked up for the passages the other terms bring up, and their long
 * lists are skipped a block at a time without being read. A passage's score is summed in query
 * term order, whatever was pruned, so both index kinds give the same bits. Memory is bounded by
 * the blocks in hand and the k best, whatever the corpus size.
 */
export function topK(query: Map<string, number>, postings: (term: string) => TermPostings | null, stats: CollectionStats, p: Bm25Params,
                     k: number): ScoredDoc[] {
  const avgdl = avgLength(stats);
  // Lucene's table: one inverse norm per norm byte.
  const norms = p.luceneNorms ? Float32Array.from({ length: 256 }, (_, i) => inverseNorm(p, byteToLength(i), avgdl)) : null;
  const cursors: Cursor[] = [];
  let t = 0;
  for (const [term, count] of query) {
    const tp = postings(term);
    if (tp && tp.df > 0) {
      const c = new Cursor(t, f32(f32(count) * idf(stats.n, tp.df)), tp.blocks, norms);
      c.seek(0);
      cursors.push(c);
    }
    t++;
  }
  // By weight, ascending: bound[i] is what terms 0..i can add at most.
  cursors.sort((a, b) => a.weight - b.weight || a.term - b.term);
  const bound: number[] = [];
  for (let i = 0; i < cursors.length; i++) bound.push((i ? bound[i - 1]! : 0) + cursors[i]!.weight);
  const parts = new Float64Array(t);
  const heap: ScoredDoc[] = [];  // the k best so far, worst on top
  const worse = (a: ScoredDoc, b: ScoredDoc) => a.score < b.score || (a.score === b.score && a.doc > b.doc);
  const swap = (i: number, j: number) => ([heap[i], heap[j]] = [heap[j]!, heap[i]!]);
  const offer = (c: ScoredDoc) => {
    if (heap.length < k) {
      heap.push(c);
      for (let i = heap.length - 1; i > 0 && worse(heap[i]!, heap[(i - 1) >> 1]!); i = (i - 1) >> 1) swap(i, (i - 1) >> 1);
    } else if (worse(heap[0]!, c)) {
      heap[0] = c;
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < heap.length && worse(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && worse(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        swap(i, m);
        i = m;
      }
    }
  };
  // Terms below `essential` cannot by themselves reach the k-th score: passages come from the others.
  let essential = 0;
  for (;;) {
    let doc = Infinity;
    for (let i = essential; i < cursors.length; i++) doc = Math.min(doc, cursors[i]!.doc);
    if (doc === Infinity) break;
    parts.fill(0);
    let upper = essential ? bound[essential - 1]! : 0;
    for (let i = essential; i < cursors.length; i++) {
      const c = cursors[i]!;
      if (c.doc !== doc) continue;
      const v = c.score(p, avgdl);
      parts[c.term] = v;
      upper += v;
      c.seek(doc + 1);
    }
    // Each non-essential term, heaviest first, while the passage could still make the k best
    // (with an equal score it would not: it comes after the one it ties with).
    const full = heap.length === k;
    let pruned = false;
    for (let i = essential - 1; i >= 0; i--) {
      if (full && upper <= heap[0]!.score) {
        pruned = true;
        break;
      }
      const c = cursors[i]!;
      upper -= c.weight;
      c.seek(doc);
      if (c.doc === doc) {
        const v = c.score(p, avgdl);
        parts[c.term] = v;
        upper += v;
      }
    }
    if (pruned) continue;
    let score = 0;
    for (let i = 0; i < t; i++) score += parts[i]!;
    offer({ doc, score: f32(score) });
    if (heap.length === k) while (essential < cursors.length && bound[essential]! <= heap[0]!.score) essential++;
  }
  return heap.sort((a, b) => b.score - a.score || a.doc - b.doc);
}

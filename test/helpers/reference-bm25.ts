/**
 * BM25 as Lucene's BM25Similarity computes it, written out plainly: every passage scored, every
 * float step rounded as Java rounds it (Math.fround), no pruning, no index. The native search
 * (block-max MaxScore over compressed postings) must return exactly this: the same passages in the
 * same order with the same float scores.
 */
const f32 = Math.fround;

/** Lucene's SmallFloat.intToByte4 then byte4ToInt: the length a passage's one-byte norm stands for. */
export function luceneLength(dl: number): number {
  if (dl < 24) return dl;
  const i = dl - 24;
  const bits = 32 - Math.clz32(i);
  const b = bits < 4 ? i : ((i >>> (bits - 4)) & 0x07) | ((bits - 3) << 3);
  const mant = b & 0x07, shift = (b >>> 3) - 1;
  return 24 + (shift === -1 ? mant : (mant | 0x08) * 2 ** shift);
}

export interface ReferenceParams {
  k1: number;
  b: number;
  luceneNorms: boolean;
}

/**
 * The k best passages for the query's terms (each passage given as its analyzed terms), best first,
 * ties to the lower passage number.
 */
export function referenceTopK(passages: string[][], query: string[], p: ReferenceParams, k: number): Array<{ doc: number; score: number }> {
  const n = passages.filter((t) => t.length > 0).length;
  const sum = passages.reduce((a, t) => a + t.length, 0);
  const avgdl = f32(sum / n);
  const k1 = f32(p.k1), b = f32(p.b);
  const counts = new Map<string, number>();
  for (const t of query) counts.set(t, (counts.get(t) ?? 0) + 1);
  const df = new Map<string, number>();
  for (const t of passages) for (const term of new Set(t)) if (counts.has(term)) df.set(term, (df.get(term) ?? 0) + 1);
  const hits: Array<{ doc: number; score: number }> = [];
  passages.forEach((terms, doc) => {
    const dl = f32(p.luceneNorms ? luceneLength(terms.length) : terms.length);
    const inv = f32(1 / f32(k1 * f32(f32(1 - b) + f32(f32(b * dl) / avgdl))));
    let score = 0, matched = false;
    for (const [term, count] of counts) {
      const freq = terms.filter((t) => t === term).length;
      if (freq === 0) continue;
      matched = true;
      const d = df.get(term)!;
      const idf = f32(Math.log(1 + (n - d + 0.5) / (d + 0.5)));
      const w = f32(f32(count) * idf);
      score += f32(w - f32(w / f32(1 + f32(freq * inv))));
    }
    if (matched) hits.push({ doc, score: f32(score) });
  });
  return hits.sort((x, y) => y.score - x.score || x.doc - y.doc).slice(0, k);
}

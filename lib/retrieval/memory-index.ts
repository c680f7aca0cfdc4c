/** A BM25 index held in memory: one block of postings per term, built from the passages at once. */
import type { AnalyzerName } from './analyzer';
import { BLOCK_POSTINGS, CollectionStats, Postings, TermPostings } from './bm25-score';
import type { CorpusPassage } from './corpus';
import { Bm25Store, passageTerms } from './index-store';

export class MemoryStore implements Bm25Store {
  readonly stats: CollectionStats;
  private readonly lists = new Map<string, Postings>();

  constructor(readonly passages: CorpusPassage[], analyzer: AnalyzerName) {
    const build = new Map<string, { docs: number[]; tfs: number[]; lens: number[] }>();
    let sumLength = 0, docCount = 0;
    passages.forEach((p, doc) => {
      const { counts, length } = passageTerms(p, analyzer);
      sumLength += length;
      if (length > 0) docCount++;
      for (const [t, tf] of counts) {
        let l = build.get(t);
        if (!l) build.set(t, (l = { docs: [], tfs: [], lens: [] }));
        l.docs.push(doc);
        l.tfs.push(tf);
        l.lens.push(length);
      }
    });
    for (const [t, l] of build) this.lists.set(t, { docs: Int32Array.from(l.docs), tfs: Int32Array.from(l.tfs), lens: Int32Array.from(l.lens) });
    this.stats = { n: docCount, sumLength };
  }

  get size(): number {
    return this.passages.length;
  }

  postings(term: string): TermPostings | null {
    const l = this.lists.get(term);
    if (!l) return null;
    const blocks = [];
    for (let at = 0; at < l.docs.length; at += BLOCK_POSTINGS) {
      const end = Math.min(l.docs.length, at + BLOCK_POSTINGS);
      const block = { docs: l.docs.subarray(at, end), tfs: l.tfs.subarray(at, end), lens: l.lens.subarray(at, end) };
      blocks.push({ first: l.docs[at]!, last: l.docs[end - 1]!, load: () => block });
    }
    return { df: l.docs.length, blocks };
  }

  passage(doc: number): CorpusPassage {
    return this.passages[doc]!;
  }

  close(): void {}
}

/**
 * Retrievals issued together go to the retriever together. Sequences generating side by side
 * (completeBatch, concurrent server requests) reach their retrieval strides in the same scheduler
 * pass; each asks for its passages, and the asks gathered before the event loop turns go out as one
 * `retrieveMany` (the built-in BM25 searches them in parallel off the JS thread; Elasticsearch gets
 * one _msearch). Meanwhile the scheduler keeps running the passes of sequences that are not
 * retrieving. A retriever without `retrieveMany` gets its asks as before, one `retrieve` each, all
 * at once. Each ask resolves to exactly what `retrieve` would have returned for it, and an ask
 * whose signal aborts is rejected at once without disturbing the others.
 */
import { AbortError, InvalidArgumentError } from '../errors';
import type { Passage, RetrieveOptions, Retriever } from '../retrieval/types';

interface Ask {
  query: string;
  signal: AbortSignal | undefined;
  resolve: (p: Passage[]) => void;
  reject: (e: unknown) => void;
}

class RetrievalBatcher implements Retriever {
  /** Asks not yet sent, by k. */
  private pending = new Map<number, Ask[]>();
  private scheduled = false;

  constructor(private readonly target: Retriever) {}

  retrieve(query: string, k: number, options: RetrieveOptions = {}): Promise<Passage[]> {
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(new AbortError());
    return new Promise((resolve, reject) => {
      const asks = this.pending.get(k) ?? [];
      this.pending.set(k, asks);
      asks.push({ query, signal, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const groups = this.pending;
    this.pending = new Map();
    for (const [k, asks] of groups) void this.send(k, asks);
  }

  private async send(k: number, asks: Ask[]): Promise<void> {
    // The batch stops only when every ask in it has been aborted; each ask is settled by its own signal.
    const all = new AbortController();
    let live = asks.length;
    const settled = new Array<boolean>(asks.length).fill(false);
    const cleanups = asks.map((a, i) => {
      if (!a.signal) return () => {};
      const onAbort = () => {
        if (settled[i]) return;
        settled[i] = true;
        a.reject(new AbortError());
        if (--live === 0) all.abort();
      };
      a.signal.addEventListener('abort', onAbort, { once: true });
      return () => a.signal!.removeEventListener('abort', onAbort);
    });
    const settle = (i: number, f: () => void) => {
      if (settled[i]) return;
      settled[i] = true;
      f();
    };
    try {
      const queries = asks.map((a) => a.query);
      if (this.target.retrieveMany) {
        const results = await this.target.retrieveMany(queries, k, { signal: all.signal });
        if (!Array.isArray(results) || results.length !== queries.length)
          throw new InvalidArgumentError(`retrieval.retriever.retrieveMany() must return one array of passages per query (${queries.length}), got ${Array.isArray(results) ? results.length : typeof results}`);
        results.forEach((r, i) => settle(i, () => asks[i]!.resolve(r)));
      } else {
        await Promise.all(asks.map(async (a, i) => {
          try {
            const r = await this.target.retrieve(a.query, k, { signal: a.signal });
            settle(i, () => a.resolve(r));
          } catch (e) {
            settle(i, () => a.reject(e));
          }
        }));
      }
    } catch (e) {
      asks.forEach((a, i) => settle(i, () => a.reject(e)));
    } finally {
      cleanups.forEach((c) => c());
    }
  }
}

const batchers = new WeakMap<Retriever, RetrievalBatcher>();

/** The one batcher of a retriever: every generation that uses the retriever shares it. */
export function batchedRetriever(r: Retriever): Retriever {
  let b = batchers.get(r);
  if (!b) batchers.set(r, (b = new RetrievalBatcher(r)));
  return b;
}

/**
 * The retriever contract In-Context RALM uses. It is framework-neutral and shaped so that
 * LangChain.js and LlamaIndex.TS retrievers adapt in three lines (see docs/ralm.md):
 *
 * ```ts
 * const fromLangChain = (r: BaseRetriever): Retriever => ({
 *   retrieve: async (q, k) => (await r.invoke(q)).slice(0, k).map((d, i) => ({ id: d.id ?? String(i), text: d.pageContent, metadata: d.metadata })),
 * });
 * ```
 */

/** One retrieved passage. */
export interface Passage {
  /** Stable within its corpus: the key of cached passage states. */
  id: string;
  text: string;
  /** Put before the text, on its own line, when the passage is fed to the model (DPR style). */
  title?: string;
  /** The retriever's relevance score (higher is better). */
  score?: number;
  /** Where it came from (a file name for the built-in retriever) and anything else. */
  metadata?: Record<string, unknown>;
}

export interface RetrieveOptions {
  signal?: AbortSignal;
}

/** Anything that returns the `k` passages most relevant to a text query, best first. */
export interface Retriever {
  retrieve(query: string, k: number, options?: RetrieveOptions): Promise<Passage[]>;
  /**
   * Optional: several queries at once, results in query order, each as `retrieve` would return it
   * (a search engine's batch endpoint, or parallel search). RALM uses it when several sequences
   * retrieve together; without it they go to `retrieve` one by one.
   */
  retrieveMany?(queries: string[], k: number, options?: RetrieveOptions): Promise<Passage[][]>;
}

/** The retriever's `retrieveMany`, or `retrieve` for each query in turn where it has none. */
export async function retrieveMany(retriever: Retriever, queries: string[], k: number, options?: RetrieveOptions): Promise<Passage[][]> {
  if (retriever.retrieveMany) return retriever.retrieveMany(queries, k, options);
  const out: Passage[][] = [];
  for (const q of queries) out.push(await retriever.retrieve(q, k, options));
  return out;
}

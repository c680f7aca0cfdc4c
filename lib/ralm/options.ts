/** Validation of the retrieval options, naming the field at fault. */
import { InvalidArgumentError } from '../errors';
import { Exclusion } from '../retrieval/exclude';
import { batchedRetriever } from './retrieval-batcher';
import type { RalmModel, ResolvedRetrieval, RetrievalOptions } from './types';

function int(v: unknown, name: string, dflt: number, min: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min) throw new InvalidArgumentError(`retrieval.${name} must be an integer ≥ ${min}, got ${String(v)}`);
  return x;
}

export function resolveRetrieval(o: RetrievalOptions, model: RalmModel): ResolvedRetrieval {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('retrieval must be an object');
  if (!o.retriever || typeof o.retriever.retrieve !== 'function') throw new InvalidArgumentError('retrieval.retriever must have a retrieve(query, k) method');
  const separator = o.separator ?? '\n';
  if (typeof separator !== 'string') throw new InvalidArgumentError('retrieval.separator must be a string');
  const maxPassageTokens = int(o.maxPassageTokens, 'maxPassageTokens', 256, 1);
  const maxContextTokens = int(o.maxContextTokens, 'maxContextTokens', model.config.maxPositionEmbeddings, 2);
  if (maxContextTokens > model.config.maxPositionEmbeddings)
    throw new InvalidArgumentError(`retrieval.maxContextTokens ${maxContextTokens} exceeds the model's max_position_embeddings ${model.config.maxPositionEmbeddings}`);
  let rerank: ResolvedRetrieval['rerank'] = null;
  if (o.rerank !== undefined && o.rerank !== false) {
    const r = o.rerank === true ? {} : o.rerank;
    if (r === null || typeof r !== 'object') throw new InvalidArgumentError('retrieval.rerank must be a boolean or an object');
    if (r.model !== undefined && (typeof r.model !== 'object' || typeof r.model.createSequence !== 'function'))
      throw new InvalidArgumentError('retrieval.rerank.model must be a loaded JambaModel');
    rerank = { k: int(r.k, 'rerank.k', 16, 1), tokens: int(r.tokens, 'rerank.tokens', 16, 1), model: r.model };
  }
  // A passage that with the BOS and separator would fill the context is cut further when fed.
  if (maxPassageTokens >= maxContextTokens)
    throw new InvalidArgumentError(`retrieval.maxPassageTokens ${maxPassageTokens} leaves no room for the prefix within maxContextTokens ${maxContextTokens}`);
  return {
    retriever: batchedRetriever(o.retriever), stride: int(o.stride, 'stride', 4, 1), queryTokens: int(o.queryTokens, 'queryTokens', 32, 1),
    maxPassageTokens, rerank, separator, maxContextTokens, exclusion: o.exclude === undefined ? null : new Exclusion(o.exclude, 'retrieval.exclude'),
  };
}

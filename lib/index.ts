/**
 * jamba-node: AI21's Jamba language models (hybrid Mamba + attention, mixture of experts) from
 * Node.js, on a native C++ backend.
 */
export { loadModel, JambaModel } from './model';
export type { LoadOptions, ModelInfo, LayerInfo, ModelStats, InputOptions, MultiPassOptions, MultiPassResult, RerankCallOptions } from './model';
export { Snapshot } from './snapshot';
export { GradTape } from './grad';
export type { Segment, GradExample, GradTargets, ForwardForGradOptions, BackwardOptions, BackwardResult, LayerStateGrad } from './grad';
export { ChatTemplateError } from './chat';
export type { ChatMessage, ChatOptions, ContentPart, MessageContent } from './chat';
export { Sequence, EMBEDDING_POSITION } from './sequence';
export type { EvaluateOptions, LogitsMode, RunOptions, RunResult, SequenceInput } from './sequence';
export type { GenerateOptions, GenerationResult, FinishReason, TokenLogprob } from './generation';
export type { ResponseFormat } from './constraints/grammar';
export type { ToolCall, ToolChoice } from './tools';
export type { ScoreOptions, ScoreResult } from './score';
export type { Passage, Retriever, RetrieveOptions } from './retrieval/types';
export { Bm25Retriever } from './retrieval/bm25';
export type { Bm25Options } from './retrieval/bm25';
export type { IndexParams } from './retrieval/index-store';
export { analyze, standardTokens, LUCENE_ENGLISH_STOP_WORDS } from './retrieval/analyzer';
export type { AnalyzerName } from './retrieval/analyzer';
export { luceneLength } from './retrieval/bm25-score';
export { Exclusion, retrieveAllowed } from './retrieval/exclude';
export type { ExcludeOptions } from './retrieval/exclude';
export { chunkText } from './retrieval/chunk';
export type { ChunkOptions } from './retrieval/chunk';
export type { CorpusPassage, CorpusSource } from './retrieval/corpus';
export type { RetrievalOptions, RerankOptions, Retrieval, RankedPassage, RalmModel } from './ralm/types';
export { ralmPerplexity, ralmWindows } from './ralm/eval';
export type { RalmEvalOptions, RalmEvalResult, RalmWindow, RalmLayout } from './ralm/eval';
export type { SamplingOptions } from './sampling';
export { JambaTokenizer } from './tokenizer';
export type { EncodeOptions, DecodeOptions, VocabType } from './tokenizer';
export { parseConfig, readConfig } from './config';
export type { JambaConfig, LayerType } from './config';
export { expectedTensors, parameterCounts } from './graph';
export type { ExpectedTensor } from './graph';
export { readSafetensorsHeader, readCheckpointTensors } from './safetensors';
export type { TensorInfo, SafetensorsFile, StDtype } from './safetensors';
export { evaluateNll, windowedNll, countWords } from './evaluate';
export type { NllResult, WindowOptions } from './evaluate';
export { defaultModelDir } from './paths';
export * from './errors';
export { InsufficientMemoryError, estimateLoadBytes, availableMemoryBytes } from './memory';
export { createServer, jambaPlugin, ApiError, ServerLifecycle } from './server';
export type { ServerOptions, JambaPluginOptions, JambaServer, DrainOptions, DrainResult } from './server';

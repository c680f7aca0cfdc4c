/**
 * A frozen reader (AI21's frozen-LM paper, §3): the frozen model answers a question from
 * retrieved passages, steered by a prompt trained on question–answer pairs. The layout is
 * [BOS][P] passages ⏎⏎ question, with the loss on the answer's tokens only. The passages come from
 * any `Retriever` (the built-in BM25 one, Elasticsearch, …), retrieved with the question.
 */
import { InvalidArgumentError } from '../errors';
import type { GenerateOptions } from '../generation';
import type { JambaModel } from '../model';
import type { Optimizer } from '../nn/optim';
import type { Retriever } from '../retrieval/types';
import { SoftPrompt, TrainItem, evaluateWithoutPrompt } from './soft-prompt';

export interface QuestionAnswer {
  question: string;
  answer: string;
}

export interface FrozenReaderOptions {
  retriever: Retriever;
  prompt: SoftPrompt;
  /** Passages put before the question (default 1), best first. */
  passages?: number;
  /** Each passage is cut to this many tokens (default 256). */
  maxPassageTokens?: number;
}

export class FrozenReader {
  readonly prompt: SoftPrompt;
  private readonly retriever: Retriever;
  private readonly k: number;
  private readonly maxPassageTokens: number;

  constructor(private readonly model: JambaModel, o: FrozenReaderOptions) {
    if (!o || typeof o.retriever?.retrieve !== 'function') throw new InvalidArgumentError('retriever must have retrieve(query, k)');
    if (!(o.prompt instanceof SoftPrompt)) throw new InvalidArgumentError('prompt must be a SoftPrompt');
    this.retriever = o.retriever;
    this.prompt = o.prompt;
    this.k = o.passages ?? 1;
    this.maxPassageTokens = o.maxPassageTokens ?? 256;
    if (!Number.isInteger(this.k) || this.k < 1) throw new InvalidArgumentError('passages must be a positive integer');
    if (!Number.isInteger(this.maxPassageTokens) || this.maxPassageTokens < 1) throw new InvalidArgumentError('maxPassageTokens must be a positive integer');
  }

  /** The reader's input for a question: its passages (cut to length), a blank line, the question. */
  async input(question: string, signal?: AbortSignal): Promise<string> {
    if (typeof question !== 'string' || !question) throw new InvalidArgumentError('question must be a non-empty string');
    const found = await this.retriever.retrieve(question, this.k, signal ? { signal } : undefined);
    const texts = await Promise.all(found.map(async (p) => {
      const ids = await this.model.tokenizer.encode(p.title ? `${p.title}\n${p.text}` : p.text, { addSpecialTokens: false });
      return this.model.tokenizer.decode(ids.slice(0, this.maxPassageTokens));
    }));
    return `${texts.join('\n\n')}\n\n${question}`;
  }

  private items(qas: QuestionAnswer[], signal?: AbortSignal): Promise<TrainItem[]> {
    if (!Array.isArray(qas) || qas.length === 0) throw new InvalidArgumentError('examples must be a non-empty array of { question, answer }');
    return Promise.all(qas.map(async (qa, i) => {
      if (!qa || typeof qa.answer !== 'string' || !qa.answer) throw new InvalidArgumentError(`examples[${i}].answer must be a non-empty string`);
      return { input: await this.input(qa.question, signal), target: qa.answer };
    }));
  }

  /** One optimizer step of the prompt on the answers' mean NLL. */
  async step(qas: QuestionAnswer[], optimizer: Optimizer, o: { signal?: AbortSignal } = {}): Promise<{ loss: number; tokens: number }> {
    return this.prompt.step(await this.items(qas, o.signal), optimizer, o);
  }

  /** The answers' mean NLL per token with the prompt. */
  async evaluate(qas: QuestionAnswer[], o: { signal?: AbortSignal } = {}): Promise<{ loss: number; tokens: number }> {
    return this.prompt.evaluate(await this.items(qas, o.signal), o);
  }

  /** The same, from the same passages without the prompt: what the prompt must beat. */
  async evaluateWithoutPrompt(qas: QuestionAnswer[], o: { signal?: AbortSignal } = {}): Promise<{ loss: number; tokens: number }> {
    return evaluateWithoutPrompt(this.model, await this.items(qas, o.signal), o);
  }

  /** Answers a question: the prompt, its passages and the question, then generation. */
  async answer(question: string, o: Omit<GenerateOptions, 'inputsEmbeds' | 'retrieval'> = {}): Promise<string> {
    const input = await this.model.tokenizer.encode(await this.input(question, o.signal), { addSpecialTokens: this.prompt.position === 'first' });
    const r = await this.model.complete(input, { maxTokens: 16, temperature: 0, ...o, inputsEmbeds: await this.prompt.inputsEmbeds() });
    return r.text;
  }
}

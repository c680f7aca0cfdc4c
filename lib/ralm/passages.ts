/**
 * Passages as model input: `[BOS] passage separator`, cut to the passage budget, and the state
 * after it. That state is cached by its tokens (the model's passage cache, a byte-bounded LRU of
 * snapshots), so a passage retrieved again costs a state copy instead of a prefill: the prefix
 * after it still has to be evaluated, since what it conditions on changed.
 */
import { feed } from '../generation';
import type { Passage } from '../retrieval/types';
import type { Sequence } from '../sequence';
import type { RalmModel } from './types';

export interface PassageLayout {
  maxPassageTokens: number;
  separator: string;
  maxContextTokens: number;
}

const MEMO_LIMIT = 4096;

export class PassageStates {
  readonly bos: number | null;
  private sep: number[] | undefined;
  private memo = new Map<string, number[]>();

  constructor(private readonly model: RalmModel, private readonly layout: PassageLayout) {
    this.bos = model.config.bosTokenId ?? model.tokenizer.bosTokenId;
  }

  /** What a passage looks like to the model: its title on a line of its own, then its text. */
  static text(p: Passage): string {
    return p.title ? `${p.title}\n${p.text}` : p.text;
  }

  /** `[BOS?] passage separator`, the passage cut so that the whole leaves room for one prefix token. */
  async head(p: Passage | null, withBos: boolean): Promise<number[]> {
    const start = withBos && this.bos !== null ? [this.bos] : [];
    if (!p) return start;
    this.sep ??= await this.model.tokenizer.encode(this.layout.separator, { addSpecialTokens: false });
    const text = PassageStates.text(p);
    let ids = this.memo.get(text);
    if (!ids) {
      ids = await this.model.tokenizer.encode(text, { addSpecialTokens: false });
      if (this.memo.size >= MEMO_LIMIT) this.memo.clear();
      this.memo.set(text, ids);
    }
    const room = Math.min(this.layout.maxPassageTokens, this.layout.maxContextTokens - 1 - start.length - this.sep.length);
    return [...start, ...ids.slice(0, Math.max(0, room)), ...this.sep];
  }

  /**
   * A new sequence holding the state after `head` then `body`, and the logits after it. The
   * longest cached prefix of the two is restored: the passage's own state, or a state left
   * earlier with this passage in front and part of this body after it (prefixes only grow while
   * generating, so returning to a passage only evaluates what came since). `cached` tells
   * whether the whole head came from the cache.
   */
  async open(head: number[], body: number[], signal?: AbortSignal): Promise<{ seq: Sequence; cached: boolean; logits: Float32Array }> {
    const seq = this.model.createSequence();
    try {
      const cache = this.model.passageCache;
      const all = [...head, ...body];
      const hit = all.length ? cache?.lookup(all) : undefined;
      if (hit) seq.restore(hit);
      let done = hit?.tokens.length ?? 0;
      const cached = done >= head.length;
      if (!cached) {
        await feed(seq, new Float32Array(0), Int32Array.from(head.slice(done)), 'last', false, signal);
        cache?.store(seq.snapshot());
        done = head.length;
      }
      const logits = (await feed(seq, new Float32Array(0), Int32Array.from(all.slice(done)), 'last', false, signal)).logits;
      return { seq, cached, logits };
    } catch (e) {
      seq.dispose();
      throw e;
    }
  }

  /** Keeps `seq`'s state (passage, prefix and all) for a later return to the same passage. */
  keep(seq: Sequence): void {
    if (seq.position > 0 && seq.lastLogits.length) this.model.passageCache?.store(seq.snapshot());
  }
}

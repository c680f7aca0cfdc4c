/**
 * Prompt-prefix reuse: snapshots of evaluated prompts (and of finished generations), so a prompt
 * that starts with one of them restores the state instead of evaluating those tokens again — a
 * chat's next turn, a shared system prompt, a retrieved passage. Least recently used entries go
 * first once the byte budget is reached.
 */
import type { Snapshot } from './snapshot';

export class PrefixCache {
  private entries: Snapshot[] = [];
  private used = 0;
  hits = 0;
  misses = 0;
  tokensReused = 0;

  constructor(readonly maxBytes: number) {}

  /** The longest entry whose tokens start `prompt` (possibly all of it), or undefined. */
  lookup(prompt: ArrayLike<number>): Snapshot | undefined {
    let best: Snapshot | undefined;
    for (const e of this.entries) {
      if (e.tokens.length > prompt.length || (best && e.tokens.length <= best.tokens.length)) continue;
      let i = 0;
      while (i < e.tokens.length && e.tokens[i] === prompt[i]) i++;
      // An exact match is only usable with the logits that follow it.
      if (i === e.tokens.length && (i < prompt.length || e.logits.length > 0)) best = e;
    }
    if (best) {
      this.entries = [...this.entries.filter((e) => e !== best), best];
      this.hits++;
      this.tokensReused += best.tokens.length;
    } else {
      this.misses++;
    }
    return best;
  }

  store(s: Snapshot): void {
    if (s.bytes > this.maxBytes || s.tokens.length === 0) return;
    const same = this.entries.find((e) => e.tokens.length === s.tokens.length && e.tokens.every((t, i) => t === s.tokens[i]));
    if (same) this.remove(same);
    this.entries.push(s);
    this.used += s.bytes;
    while (this.used > this.maxBytes && this.entries.length) this.remove(this.entries[0]!);
  }

  clear(): void {
    this.entries = [];
    this.used = 0;
  }

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.length;
  }

  private remove(e: Snapshot): void {
    this.entries = this.entries.filter((x) => x !== e);
    this.used -= e.bytes;
  }
}

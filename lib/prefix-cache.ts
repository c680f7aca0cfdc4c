/**
 * Prompt-prefix reuse: snapshots of evaluated prompts (and of finished generations), so a prompt
 * that starts with one of them restores the state instead of evaluating those tokens again — a
 * chat's next turn, a shared system prompt, a retrieved passage.
 *
 * Entries live in namespaces (a request's `promptCacheKey`; none is a namespace of its own): a
 * prompt only reuses state stored under its own key, so one tenant's prompts are never reused, or
 * timed, by another's. When the byte budget is reached, the least recently used entry without a
 * key goes first, then the least recently used keyed one: a client that names its cache keeps it
 * longer. A restored state equals the evaluated one exactly, so none of this changes a result.
 */
import type { Snapshot } from './snapshot';

interface Entry {
  snapshot: Snapshot;
  key: string | undefined;
}

export class PrefixCache {
  /** Least recently used first. */
  private entries: Entry[] = [];
  private used = 0;
  hits = 0;
  misses = 0;
  tokensReused = 0;

  constructor(readonly maxBytes: number) {}

  /** The longest entry of namespace `key` whose tokens start `prompt` (possibly all of it), or undefined. */
  lookup(prompt: ArrayLike<number>, key?: string): Snapshot | undefined {
    let best: Entry | undefined;
    for (const e of this.entries) {
      const t = e.snapshot.tokens;
      if (e.key !== key || t.length > prompt.length || (best && t.length <= best.snapshot.tokens.length)) continue;
      let i = 0;
      while (i < t.length && t[i] === prompt[i]) i++;
      // An exact match is only usable with the logits that follow it.
      if (i === t.length && (i < prompt.length || e.snapshot.logits.length > 0)) best = e;
    }
    if (!best) {
      this.misses++;
      return undefined;
    }
    this.entries = [...this.entries.filter((e) => e !== best), best];
    this.hits++;
    this.tokensReused += best.snapshot.tokens.length;
    return best.snapshot;
  }

  store(s: Snapshot, key?: string): void {
    if (s.bytes > this.maxBytes || s.tokens.length === 0) return;
    const same = this.entries.find((e) => e.key === key && e.snapshot.tokens.length === s.tokens.length && e.snapshot.tokens.every((t, i) => t === s.tokens[i]));
    if (same) this.remove(same);
    this.entries.push({ snapshot: s, key });
    this.used += s.bytes;
    while (this.used > this.maxBytes && this.entries.length) this.remove(this.entries.find((e) => e.key === undefined) ?? this.entries[0]!);
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

  private remove(e: Entry): void {
    this.entries = this.entries.filter((x) => x !== e);
    this.used -= e.snapshot.bytes;
  }
}

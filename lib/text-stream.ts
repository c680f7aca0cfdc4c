/**
 * Turns a growing list of generated ids into UTF-8-safe text pieces. A character split over
 * several byte-fallback tokens is held back until complete, and so is text that might be the start
 * of a stop string. The pieces always add up to decode(prompt + new) minus decode(prompt).
 */
import type { JambaTokenizer } from './tokenizer';

const REPLACEMENT = '\uFFFD';

export class TextStream {
  private readonly ids: number[];
  private readonly promptText: string;
  private prefixOffset: number;
  private readOffset: number;
  /** decode(ids[prefixOffset, readOffset)), kept until the window moves. */
  private prefixText: string;
  /** Text decoded so far that is stable (no partial character at its end). */
  private text = '';
  /** How much of `text` has been handed out. */
  private emitted = 0;
  /** Set once a stop string is seen: text is cut there. */
  stopped: string | null = null;

  constructor(private readonly tokenizer: JambaTokenizer, prompt: number[], private readonly stops: string[]) {
    this.ids = [...prompt];
    this.promptText = tokenizer.decode(prompt);
    // A short window of prompt tokens gives the decoder the context of the first new token
    // (whether "▁x" starts a word) without re-decoding the whole prompt at every step.
    this.prefixOffset = Math.max(0, prompt.length - 4);
    this.readOffset = prompt.length;
    this.prefixText = tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
  }

  /** Adds a token; returns the text that can be shown now ('' if none). */
  push(id: number): string {
    this.ids.push(id);
    if (this.stopped !== null) return '';
    const prefix = this.prefixText;
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith(REPLACEMENT) && full.startsWith(prefix)) {
      this.text += full.slice(prefix.length);
      // The window moves to the tokens just emitted (decoded alone: the decoder strips a leading space).
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      this.prefixText = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    }
    return this.release(false);
  }

  /** Call once generation has ended: returns whatever is left, decoded exactly. */
  finish(): string {
    if (this.stopped === null) {
      const all = this.tokenizer.decode(this.ids);
      this.text = all.startsWith(this.promptText) ? all.slice(this.promptText.length) : all;
      if (this.text.length < this.emitted) this.text = this.text.padEnd(this.emitted);  // never un-say text
    }
    return this.release(true);
  }

  /** The whole continuation (after finish(), or so far). */
  get fullText(): string {
    return this.text;
  }

  private release(final: boolean): string {
    if (this.stopped === null && this.stops.length > 0) {
      // Look for a stop string in the text not yet emitted (it may start in the emitted tail).
      const from = Math.max(0, this.emitted - Math.max(...this.stops.map((s) => s.length)));
      let cut = -1, which: string | null = null;
      for (const s of this.stops) {
        const at = this.text.indexOf(s, from);
        if (at !== -1 && (cut === -1 || at < cut)) { cut = at; which = s; }
      }
      if (which !== null) {
        this.stopped = which;
        this.text = this.text.slice(0, Math.max(cut, this.emitted));
        final = true;
      }
    }
    let end = this.text.length;
    if (!final && this.stopped === null) {
      // Hold back a tail that is a prefix of some stop string.
      for (const s of this.stops)
        for (let k = Math.min(s.length - 1, end - this.emitted); k > 0; k--)
          if (this.text.endsWith(s.slice(0, k))) { end = Math.min(end, this.text.length - k); break; }
    }
    const piece = this.text.slice(this.emitted, end);
    this.emitted = end;
    return piece;
  }
}

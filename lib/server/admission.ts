/**
 * Admission control: at most `parallel` generations run at once (they are batched together by the
 * model's scheduler), at most `queueSize` wait for a slot, and beyond that requests are refused
 * at once (HTTP 429) instead of the queue growing without bound.
 */
import { ApiError } from './errors';

export class Admission {
  private active = 0;
  private waiting: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];

  constructor(readonly parallel: number, readonly queueSize: number) {}

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Resolves when a slot is free; rejects with 429 if the queue is full, or if `signal` aborts first. */
  async acquire(signal: AbortSignal): Promise<void> {
    if (this.active < this.parallel) {
      this.active++;
      return;
    }
    if (this.waiting.length >= this.queueSize)
      throw new ApiError(429, `The server is busy: ${this.active} generations running and ${this.waiting.length} queued. Retry later.`, 'rate_limit_error', 'queue_full');
    await new Promise<void>((resolve, reject) => {
      const entry = { resolve, reject };
      this.waiting.push(entry);
      signal.addEventListener('abort', () => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          reject(new ApiError(499, 'The client closed the request.', 'client_closed'));
        }
      }, { once: true });
    });
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next.resolve();  // the slot passes straight to the next request
    else this.active--;
  }
}

/**
 * A server's life in a cluster: the requests in flight, and draining them before the process
 * goes. `drain()` makes the server not ready (so the load balancer stops sending it traffic) and
 * refuses new requests with 503 and `Retry-After` (those that still arrive while the balancer
 * catches up go to another replica); requests already accepted get until the deadline to finish,
 * then are stopped with `server_shutting_down`. The library installs no signal handlers: the CLI
 * (or the application) calls `drain` on SIGTERM.
 */
import { ApiError } from './errors';

export interface DrainOptions {
  /** How long requests in flight may run before they are stopped (default 30,000 ms). */
  timeoutMs?: number;
}

export interface DrainResult {
  /** Requests that finished on their own during the drain. */
  completed: number;
  /** Requests stopped at the deadline. */
  stopped: number;
}

interface InFlight {
  /** Stops the request at the deadline; undefined for requests too short to need it. */
  stop?: () => void;
  done: Promise<void>;
}

/** Seconds a refused client is told to wait before retrying (on another replica, behind a balancer). */
export const RETRY_AFTER_SECONDS = 1;

export const shuttingDown = () =>
  new ApiError(503, 'This server is shutting down; retry the request (another replica will take it).', 'server_error', 'server_shutting_down');

export class ServerLifecycle {
  private readonly inFlight = new Set<InFlight>();
  private drainStarted: Promise<DrainResult> | undefined;

  /** True from the start of a drain on: the server is not ready and refuses new requests. */
  get draining(): boolean {
    return this.drainStarted !== undefined;
  }

  /** Requests accepted and not finished. */
  get active(): number {
    return this.inFlight.size;
  }

  /**
   * Registers a request for as long as `run` takes; refuses it (503) once draining. `stop`, when
   * given, is called at the drain's deadline and must make `run` settle soon after.
   */
  async track<T>(run: () => Promise<T>, stop?: () => void): Promise<T> {
    if (this.draining) throw shuttingDown();
    let finish!: () => void;
    const entry: InFlight = { done: new Promise<void>((r) => { finish = r; }) };
    if (stop) entry.stop = stop;
    this.inFlight.add(entry);
    try {
      return await run();
    } finally {
      this.inFlight.delete(entry);
      finish();
    }
  }

  /** Starts draining (once; later calls return the same promise) and resolves when nothing is in flight. */
  drain(options: DrainOptions = {}): Promise<DrainResult> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (!(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) throw new RangeError('drain: timeoutMs must be a non-negative number of milliseconds');
    this.drainStarted ??= (async () => {
      const waiting = [...this.inFlight];
      let stopped = 0;
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'deadline'>((r) => { timer = setTimeout(() => r('deadline'), timeoutMs); });
      const all = Promise.all(waiting.map((e) => e.done)).then(() => 'done' as const);
      if ((await Promise.race([all, deadline])) === 'deadline') {
        for (const e of this.inFlight) {
          if (!e.stop) continue;
          e.stop();
          stopped++;
        }
        await Promise.all([...this.inFlight].map((e) => e.done));
      }
      clearTimeout(timer);
      return { completed: waiting.length - stopped, stopped };
    })();
    return this.drainStarted;
  }
}

/** `createServer`: a standalone Fastify server with the OpenAI-compatible routes. */
import Fastify, { FastifyInstance } from 'fastify';
import { ApiError } from './errors';
import { DrainOptions, DrainResult, ServerLifecycle } from './lifecycle';
import { JambaPluginOptions, jambaPlugin } from './routes';

export { jambaPlugin } from './routes';
export type { JambaPluginOptions } from './routes';
export { ApiError } from './errors';
export { ServerLifecycle } from './lifecycle';
export type { DrainOptions, DrainResult } from './lifecycle';

export interface ServerOptions extends JambaPluginOptions {
  /** Largest request body in bytes (default 1 MiB); larger ones get 413. */
  bodyLimit?: number;
  /** Fastify's logger (default off). */
  logger?: boolean;
}

/** The Fastify instance, with the drain a process calls when it is told to stop. */
export type JambaServer = FastifyInstance & {
  /**
   * Stops being ready and refuses new requests (503, `Retry-After`); requests in flight get
   * `timeoutMs` to finish, then are stopped with `server_shutting_down`. Resolves when none is
   * left. Then close the server (`app.close()`) and dispose the model.
   */
  drain(options?: DrainOptions): Promise<DrainResult>;
  readonly lifecycle: ServerLifecycle;
};

export async function createServer(options: ServerOptions): Promise<JambaServer> {
  const app = Fastify({ bodyLimit: options.bodyLimit ?? 2 ** 20, logger: options.logger ?? false });
  app.setNotFoundHandler((req, reply) => {
    const e = new ApiError(404, `No route ${req.method} ${req.url}.`, 'invalid_request_error', 'not_found');
    void reply.code(404).send(e.body());
  });
  const lifecycle = options.lifecycle ?? new ServerLifecycle();
  app.decorate('lifecycle', lifecycle);
  app.decorate('drain', (o?: DrainOptions) => lifecycle.drain(o));
  await app.register(jambaPlugin, { ...options, lifecycle });
  return app as unknown as JambaServer;
}

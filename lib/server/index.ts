/** `createServer`: a standalone Fastify server with the OpenAI-compatible routes. */
import Fastify, { FastifyInstance } from 'fastify';
import { ApiError } from './errors';
import { JambaPluginOptions, jambaPlugin } from './routes';

export { jambaPlugin } from './routes';
export type { JambaPluginOptions } from './routes';
export { ApiError } from './errors';

export interface ServerOptions extends JambaPluginOptions {
  /** Largest request body in bytes (default 1 MiB); larger ones get 413. */
  bodyLimit?: number;
  /** Fastify's logger (default off). */
  logger?: boolean;
}

export async function createServer(options: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({ bodyLimit: options.bodyLimit ?? 2 ** 20, logger: options.logger ?? false });
  app.setNotFoundHandler((req, reply) => {
    const e = new ApiError(404, `No route ${req.method} ${req.url}.`, 'invalid_request_error', 'not_found');
    void reply.code(404).send(e.body());
  });
  await app.register(jambaPlugin, options);
  return app;
}

// Mount the OpenAI-compatible routes inside your own Fastify app, under /ai.
import Fastify from 'fastify';
import { jambaPlugin, loadModel } from 'jamba-node';

const app = Fastify();
app.get('/', async () => ({ service: 'my app' }));
await app.register(jambaPlugin, { model: loadModel(), prefix: '/ai', parallel: 8 });
const address = await app.listen({ port: Number(process.env.PORT ?? 8080), host: '127.0.0.1' });
console.log(`POST ${address}/ai/v1/completions`);

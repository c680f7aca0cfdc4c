/**
 * The server under load on loopback with the embedded model: requests/s, generated tokens/s and
 * time to first token at several concurrencies, streaming, 64 new tokens per request.
 */
import type { AddressInfo } from 'node:net';
import type { JambaModel } from '../lib';
import { createServer } from '../lib/server';

export interface ServerRate { concurrency: number; requests: number; rps: number; tokensPerSecond: number; ttftMs: number; ttftP90Ms: number }

export async function benchServer(model: JambaModel, concurrencies: number[], requestsPer: (c: number) => number): Promise<ServerRate[]> {
  const app = await createServer({ model, parallel: Math.max(...concurrencies), queueSize: 1024 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/completions`;
  const out: ServerRate[] = [];
  try {
    for (const c of concurrencies) {
      const n = requestsPer(c);
      const ttft: number[] = [];
      let tokens = 0, next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: c }, async () => {
        while (next < n) {
          const i = next++;
          const start = performance.now();
          const r = await fetch(url, {
            method: 'POST', headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ prompt: `ROMEO:\n${'To be '.repeat(i % 7)}`, max_tokens: 64, temperature: 0.8, seed: i, stream: true, stream_options: { include_usage: true } }),
          });
          const reader = r.body!.getReader();
          let first = true, text = '';
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            if (first) {
              ttft.push(performance.now() - start);
              first = false;
            }
            text += Buffer.from(value).toString('utf8');
          }
          const usage = /"completion_tokens":(\d+)/.exec(text);
          tokens += usage ? Number(usage[1]) : 0;
        }
      }));
      const s = (performance.now() - t0) / 1000;
      ttft.sort((a, b) => a - b);
      out.push({ concurrency: c, requests: n, rps: n / s, tokensPerSecond: tokens / s,
        ttftMs: ttft.reduce((a, b) => a + b, 0) / ttft.length, ttftP90Ms: ttft[Math.floor(0.9 * (ttft.length - 1))]! });
    }
  } finally {
    await app.close();
  }
  return out;
}

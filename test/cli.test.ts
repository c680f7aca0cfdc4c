/** The `jamba` command fails fast and explains: usage, version, option values checked before a model loads, serve's exits. */
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

const jamba = (...args: string[]) => spawnSync(process.execPath, [path.join(__dirname, '..', 'bin', 'jamba.js'), ...args], { encoding: 'utf8', timeout: 60000 });

test('a bare `jamba` prints usage and exits 2; --version prints the version', () => {
  const bare = jamba();
  expect(bare.status).toBe(2);
  expect(bare.stderr).toMatch(/^Usage: jamba <command>/);
  const v = jamba('--version');
  expect(v.status).toBe(0);
  expect(v.stdout).toMatch(/^jamba-node \d+\.\d+\.\d+ \(node v\d+/);
  expect(jamba('--help').status).toBe(0);
});

test('negative numbers are option values, checked before any model loads', () => {
  // The model folder does not exist: the option error must come first, without loading.
  const r = jamba('generate', '--model', '/nonexistent', '--temperature', '-1', 'x');
  expect(r.status).toBe(2);
  expect(r.stderr.trim()).toBe('jamba: --temperature must be a number in [0, 100], got -1');
  const p = jamba('generate', '--model', '/nonexistent', '--top-p', '-0.5', 'x');
  expect(p.stderr.trim()).toBe('jamba: --top-p must be in (0, 1], got -0.5');
  const s = jamba('serve', '--model', '/nonexistent', '--request-timeout', '-3');
  expect(s.status).toBe(2);
  expect(s.stderr.trim()).toBe('jamba: --request-timeout must be a positive number of seconds');
  for (const [args, msg] of [
    [['--shutdown-timeout', '-1'], '--shutdown-timeout must be a number of seconds, 0 or more'],
    [['--device', 'gpu'], "--device must be cpu, cuda or auto, got 'gpu'"],
    [['--max-sequences', '0'], '--max-sequences must be at least 1'],
  ] as const) {
    const r2 = jamba('serve', '--model', '/nonexistent', ...args);
    expect([r2.status, r2.stderr.trim()]).toEqual([2, `jamba: ${msg}`]);
  }
});

test('serve exits non-zero with the typed error when the model fails to load, and says so in one line when the port is taken', async () => {
  const r = jamba('serve', '--model', '/nonexistent', '--port', '0');
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/jamba: InvalidArgumentError: \/nonexistent is not a folder\n$/);
  const blocker = net.createServer();
  await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', res));
  try {
    const port = (blocker.address() as net.AddressInfo).port;
    const t = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [path.join(__dirname, '..', 'bin', 'jamba.js'), 'serve', '--port', String(port)]);
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (status) => resolve({ status, stderr }));
    });
    expect(t.status).toBe(2);
    expect(t.stderr).toContain(`jamba: port ${port} on 127.0.0.1 is already in use (--port picks another)\n`);
    expect(t.stderr).not.toMatch(/\n\s+at /);  // no stack trace
  } finally {
    blocker.close();
  }
});

/** The runnable examples keep working (they import the package by name, as a user's code does). */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const run = (file: string, ...args: string[]) =>
  execFileSync(process.execPath, [path.join(__dirname, '..', 'examples', file), ...args], { encoding: 'utf8', timeout: 60000 });

test('generate.mjs streams text', () => {
  expect(run('generate.mjs', 'ROMEO:\n').trim().length).toBeGreaterThan(20);
});

test('batch.mjs prints one result per prompt', () => {
  expect(run('batch.mjs').match(/^--- /gm)).toHaveLength(3);
});

test('snapshot.mjs continues twice from one saved state', () => {
  const out = run('snapshot.mjs');
  expect(out).toMatch(/state after \d+ tokens: \d+ bytes/);
  expect(out.match(/^--- /gm)).toHaveLength(2);
});

test('ralm.mjs generates with passages retrieved from a corpus', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-example-'));
  try {
    fs.writeFileSync(path.join(dir, 'romeo.txt'), 'ROMEO:\nBut, soft! what light through yonder window breaks?');
    fs.writeFileSync(path.join(dir, 'other.txt'), 'KING:\nNow is the winter of our discontent.');
    const out = run('ralm.mjs', dir, 'ROMEO:\nBut, soft!');
    expect(out).toMatch(/^--- at token 0: .*romeo\.txt#0$/m);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

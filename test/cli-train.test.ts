/** `jamba train-prompt`: JSONL and text data, a PEFT adapter out, an exact resume, options checked before loading. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORPUS } from './helpers/paths';

const jamba = (...args: string[]) => spawnSync(process.execPath, [path.join(__dirname, '..', 'bin', 'jamba.js'), 'train-prompt', ...args], { encoding: 'utf8', timeout: 120000 });

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-cli-train-'));
  fs.writeFileSync(path.join(dir, 'plays.txt'), fs.readFileSync(CORPUS, 'utf8').slice(0, 40000));
  const lines = ['ROMEO', 'JULIET', 'KING', 'QUEEN', 'CLOWN', 'NURSE'].flatMap((who, i) =>
    Array.from({ length: 3 }, (_, j) => JSON.stringify({ input: `who speaks next? line ${i}.${j}\n`, target: `${who}:` })));
  fs.writeFileSync(path.join(dir, 'qa.jsonl'), `${lines.join('\n')}\n`);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('text data: a PEFT adapter and its optimizer state; a resumed run ends exactly where an uninterrupted one does', () => {
  const common = ['--data', path.join(dir, 'plays.txt'), '--virtual-tokens', '3', '--window', '32', '--batch', '2', '--eval-every', '2', '--json'];
  const whole = jamba(...common, '--out', path.join(dir, 'whole'), '--steps', '4');
  expect(whole.status).toBe(0);
  const r = JSON.parse(whole.stdout) as { steps: number; heldOut: number; history: Array<{ step: number; loss: number }> };
  expect(r.steps).toBe(4);
  expect(r.history).toHaveLength(4);
  expect(Number.isFinite(r.heldOut)).toBe(true);
  for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'optimizer.safetensors', 'trainer_state.json']) expect(fs.existsSync(path.join(dir, 'whole', f))).toBe(true);
  expect(jamba(...common, '--out', path.join(dir, 'split'), '--steps', '2').status).toBe(0);
  const resumed = jamba(...common, '--out', path.join(dir, 'split'), '--steps', '4', '--resume');
  expect(resumed.status).toBe(0);
  expect(fs.readFileSync(path.join(dir, 'split', 'adapter_model.safetensors')).equals(fs.readFileSync(path.join(dir, 'whole', 'adapter_model.safetensors')))).toBe(true);
  expect(JSON.parse(resumed.stdout).history).toEqual(r.history);
  // The same folder again without --resume is refused rather than overwritten.
  const again = jamba(...common, '--out', path.join(dir, 'whole'), '--steps', '4');
  expect(again.status).toBe(2);
  expect(again.stderr).toMatch(/already holds a run: add --resume/);
});

test('JSONL data trains on the targets; bad options and data are refused before or without training', () => {
  const ok = jamba('--data', path.join(dir, 'qa.jsonl'), '--out', path.join(dir, 'qa'), '--virtual-tokens', '2', '--steps', '2', '--eval-every', '1', '--json', '--init', 'text:Who speaks:');
  expect(ok.status).toBe(0);
  expect(JSON.parse(fs.readFileSync(path.join(dir, 'qa', 'adapter_config.json'), 'utf8'))).toMatchObject({ prompt_tuning_init: 'TEXT', prompt_tuning_init_text: 'Who speaks:', num_virtual_tokens: 2 });
  const cases: Array<[string[], RegExp]> = [
    [['--out', path.join(dir, 'x')], /--data FILE is required/],
    [['--data', path.join(dir, 'qa.jsonl')], /--out DIR is required/],
    [['--data', path.join(dir, 'qa.jsonl'), '--out', path.join(dir, 'y'), '--init', 'nonsense'], /--init must be vocab, random or text:STRING/],
    [['--data', path.join(dir, 'qa.jsonl'), '--out', path.join(dir, 'y'), '--held-out', '1.5'], /--held-out must be in \(0, 1\)/],
    [['--data', path.join(dir, 'missing.txt'), '--out', path.join(dir, 'y')], /cannot read/],
  ];
  for (const [args, msg] of cases) {
    const r = jamba(...args);
    expect([args.join(' '), r.status]).toEqual([args.join(' '), 2]);
    expect(r.stderr).toMatch(msg);
  }
  fs.writeFileSync(path.join(dir, 'bad.jsonl'), '{"input": 3}\n{"input": "x"}\n');
  const bad = jamba('--data', path.join(dir, 'bad.jsonl'), '--out', path.join(dir, 'z'));
  expect(bad.stderr).toMatch(/bad\.jsonl:1: each line must be/);
});

/**
 * Inputs found by fuzzing (fuzz/regressions/, named by target) and hand-made hostile inputs,
 * replayed through the same checks the fuzzers apply: each must be handled with a typed error.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkConfig, checkHeader, checkIndex } from '../fuzz/js-fuzz';
import { native } from '../lib/native';

const DIR = path.join(__dirname, '..', 'fuzz', 'regressions');
const files = fs.readdirSync(DIR).filter((f) => !f.startsWith('.') && f !== 'README.md');

let work: string;
beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-regress-'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

test('there are regression inputs for every target', () => {
  for (const prefix of ['config-', 'header-', 'index-']) expect(files.some((f) => f.startsWith(prefix))).toBe(true);
});

test.each(files)('%s', (f) => {
  const bytes = fs.readFileSync(path.join(DIR, f));
  if (f.startsWith('config-')) {
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString('utf8'));
    } catch {
      return;  // not JSON: readConfig reports it as ConfigError before parseConfig runs
    }
    checkConfig(value);
  } else if (f.startsWith('header-')) {
    checkHeader(bytes, work);
    // The native parser (the loader's second check) must reject or accept it without crashing too.
    try {
      native().ops.parseSafetensorsHeader(new Uint8Array(bytes));
    } catch (e) {
      expect((e as { code?: string }).code).toBe('checkpoint');
    }
  } else if (f.startsWith('index-')) {
    checkIndex(bytes.toString('utf8'), work);
  } else {
    throw new Error(`unknown regression target for ${f}`);
  }
});

/** The tokenizer against test/fixtures/tokenizer-cases.json (produced by HF tokenizers 0.23.2). */
import fs from 'node:fs';
import path from 'node:path';
import { JambaTokenizer } from '../lib';
import { EMBEDDED, FIXTURES, TINY_RANDOM } from './helpers/paths';

interface Case { text: string; ids: number[]; ids_no_special: number[]; decoded: string; decoded_with_special: string }
const cases = (JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer-cases.json'), 'utf8')) as { cases: Case[] }).cases;

describe.each([['fixture', TINY_RANDOM], ['embedded model', EMBEDDED]])('%s tokenizer', (_n, dir) => {
  const tok = JambaTokenizer.fromDir(dir);
  test('special token ids come from tokenizer_config.json', () => {
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId, tok.vocabSize]).toEqual([1, 2, 0, 1024]);
  });
  test.each(cases.map((c) => [JSON.stringify(c.text).slice(0, 40), c] as const))('%s', async (_t, c) => {
    expect(await tok.encode(c.text)).toEqual(c.ids);
    expect(await tok.encode(c.text, { addSpecialTokens: false })).toEqual(c.ids_no_special);
    expect(tok.decode(c.ids)).toBe(c.decoded);
    expect(tok.decode(c.ids, { skipSpecialTokens: false })).toBe(c.decoded_with_special);
  });
});

test('decode rejects ids outside the vocabulary', () => {
  const tok = JambaTokenizer.fromDir(EMBEDDED);
  expect(() => tok.decode([5, 1024])).toThrow(/ids\[1\] = 1024/);
  expect(() => tok.decode([-1])).toThrow(/ids\[0\]/);
});

/**
 * Constrained decoding on the embedded model: JSON valid under several schemas (checked with
 * Ajv, a JSON-schema validator) from greedy and sampled generation, any JSON object, a grammar
 * that forces a shape, the same result batched or alone, masks that only remove tokens, and bad
 * schemas and grammars refused by name.
 */
import Ajv from 'ajv';
import { AbortError, InvalidArgumentError, JambaModel, loadModel } from '../lib';
import { EMBEDDED } from './helpers/paths';

let model: JambaModel;
beforeAll(async () => {
  model = await loadModel(EMBEDDED);
});
afterAll(() => model.dispose());

const schemas: Record<string, Record<string, unknown>> = {
  person: {
    type: 'object', additionalProperties: false, required: ['name', 'age', 'role'],
    properties: { name: { type: 'string', maxLength: 24 }, age: { type: 'integer', minimum: 0, maximum: 120 }, role: { enum: ['king', 'queen', 'fool', 'knave'] } },
  },
  nested: {
    type: 'object', additionalProperties: false, required: ['speaker', 'lines'],
    properties: {
      speaker: { type: 'object', additionalProperties: false, required: ['name', 'noble'], properties: { name: { type: 'string', maxLength: 16 }, noble: { type: 'boolean' } } },
      lines: { type: 'array', minItems: 1, maxItems: 3, items: { type: 'string', maxLength: 20 } },
    },
  },
  enums: {
    type: 'object', additionalProperties: false, required: ['mood', 'scores'],
    properties: { mood: { enum: ['glad', 'sad', 'wroth'] }, scores: { type: 'array', maxItems: 4, items: { type: 'integer', minimum: -5, maximum: 5 } } },
  },
};

describe('JSON schemas', () => {
  const ajv = new Ajv({ strict: true });
  test.each(Object.keys(schemas))('%s: greedy and sampled output is valid JSON under the schema', async (name) => {
    const validate = ajv.compile(schemas[name]!);
    for (const o of [{ temperature: 0 }, { temperature: 1, seed: 11 }, { temperature: 1.5, topP: 0.95, seed: 12 }]) {
      const r = await model.complete('KING LEAR:\n', { maxTokens: 120, ...o, responseFormat: { type: 'json_schema', json_schema: { name, schema: schemas[name]!, strict: true } } });
      expect(r.finishReason).toBe('eos');
      const value: unknown = JSON.parse(r.text);
      expect(validate(value) ? [] : validate.errors).toEqual([]);
    }
  });

  test('json_object gives a JSON object; the same constrained generation batched equals alone', async () => {
    const opts = { maxTokens: 60, temperature: 0.8, seed: 5, responseFormat: { type: 'json_object' as const } };
    const prompts = ['ROMEO:\n', 'First Citizen:\n', 'JULIET:\nO'];
    const batch = await model.completeBatch(prompts, opts);
    for (let i = 0; i < prompts.length; i++) {
      const alone = await model.complete(prompts[i]!, opts);
      expect(batch[i]!.tokens).toEqual(alone.tokens);
      if (alone.finishReason === 'eos') expect(typeof JSON.parse(alone.text)).toBe('object');
      else expect(alone.text.startsWith('{')).toBe(true);
    }
    expect((await model.complete('A', { maxTokens: 40, temperature: 0, responseFormat: { type: 'text' } })).text).toBe((await model.complete('A', { maxTokens: 40, temperature: 0 })).text);
  });

  test('the mask only removes tokens: where the grammar allows the model\'s choice, greedy output is unchanged', async () => {
    // A grammar allowing anything up to a newline, then the end: greedy text equals the
    // unconstrained text up to its first newline.
    const free = await model.complete('KING RICHARD III:\nNow is the winter', { maxTokens: 30, temperature: 0 });
    const line = free.text.split('\n')[0]!;
    const r = await model.complete('KING RICHARD III:\nNow is the winter', { maxTokens: 30, temperature: 0, grammar: 'root ::= [^\\n]* "\\n"' });
    expect(r.text.startsWith(line)).toBe(true);
    expect(r.text.endsWith('\n')).toBe(r.finishReason === 'eos');
  });
});

describe('grammars', () => {
  test('a grammar forces its shape, greedy and sampled', async () => {
    const grammar = String.raw`root ::= speaker ": " verdict "."
speaker ::= [A-Z] [a-z]{2,8}
verdict ::= "aye" | "nay" | "perchance"`;
    for (let seed = 0; seed < 4; seed++) {
      const r = await model.complete('HAMLET:\n', { maxTokens: 40, temperature: seed ? 1 : 0, seed, grammar });
      expect(r.finishReason).toBe('eos');
      expect(r.text).toMatch(/^[A-Z][a-z]{2,8}: (aye|nay|perchance)\.$/);
    }
  });

  test('an abort stops a constrained generation cleanly', async () => {
    const ac = new AbortController();
    const it = model.generate('A', { maxTokens: 200, temperature: 1, seed: 1, grammar: 'root ::= [a-z ]+ "."', signal: ac.signal });
    await it.next();
    ac.abort();
    await expect((async () => { for (;;) if ((await it.next()).done) return; })()).rejects.toThrow(AbortError);
    expect((await model.complete('A', { maxTokens: 3, temperature: 0, grammar: 'root ::= "ok"' })).text).toBe('ok');
  });

  test('bad schemas and grammars are refused by name, and the model stays usable', async () => {
    await expect(model.complete('A', { grammar: 'root ::= (' })).rejects.toThrow(/grammar cannot be compiled/);
    await expect(model.complete('A', { grammar: '' })).rejects.toThrow(InvalidArgumentError);
    await expect(model.complete('A', { responseFormat: { type: 'json_schema', json_schema: { schema: { type: 'nonsense' } } } }))
      .rejects.toThrow(/responseFormat.json_schema.schema cannot be compiled/);
    await expect(model.complete('A', { responseFormat: { type: 'xml' } as never })).rejects.toThrow(/responseFormat.type must be/);
    await expect(model.complete('A', { responseFormat: { type: 'json_schema' } as never })).rejects.toThrow(/responseFormat.json_schema must be an object/);
    await expect(model.complete('A', { grammar: 'root ::= "x"', responseFormat: { type: 'json_object' } })).rejects.toThrow(/cannot both constrain/);
    expect((await model.complete('A', { maxTokens: 3, temperature: 0, grammar: 'root ::= "ok"' })).text).toBe('ok');
  });
});

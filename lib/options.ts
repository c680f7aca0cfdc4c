/**
 * Option objects are checked key by key: a misspelt option (`max_tokens` for `maxTokens`) is an
 * InvalidArgumentError naming it and, where one is close, the right spelling, never a silent
 * default. The key lists are checked against the option interfaces at compile time.
 */
import type { ChatOptions } from './chat';
import { InvalidArgumentError } from './errors';
import type { GenerateOptions } from './generation';

/** Every key of T, listed: a key missing from the list fails to compile. */
type AllKeys<T> = readonly (keyof T)[];
export function keys<T>() {
  return <const K extends AllKeys<T>>(k: K & (Exclude<keyof T, K[number]> extends never ? unknown : { missing: Exclude<keyof T, K[number]> })) => k as readonly string[];
}

export const GENERATE_KEYS = keys<GenerateOptions>()([
  'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'repetitionLastN', 'presencePenalty', 'frequencyPenalty', 'logitBias', 'seed',
  'maxTokens', 'stop', 'stopTokenIds', 'logprobs', 'signal', 'inputsEmbeds', 'retrieval', 'responseFormat', 'grammar',
  'onToken', 'promptCacheKey',
]);
export const CHAT_KEYS = keys<ChatOptions>()(['addGenerationPrompt', 'tools', 'toolChoice', 'parallelToolCalls', 'onToolCall', 'documents', 'chatTemplate', 'templateVariables']);

function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

/** The known key `k` was probably meant as: its camelCase form, or one a few edits away. */
function suggest(k: string, known: readonly string[]): string | undefined {
  const camel = k.replace(/[_-]([a-z])/g, (_, c: string) => c.toUpperCase());
  const norm = (s: string) => s.toLowerCase().replace(/[_-]/g, '');
  const exact = known.find((x) => x === camel || norm(x) === norm(k));
  if (exact) return exact;
  let best: string | undefined, bestD = Math.max(2, Math.floor(k.length / 4)) + 1;
  for (const x of known) {
    const dd = distance(norm(k), norm(x));
    if (dd < bestD) [best, bestD] = [x, dd];
  }
  return best;
}

/** Refuses any key of `options` not in the known lists. */
export function checkKeys(options: object, what: string, ...known: Array<readonly string[]>): void {
  const all = known.flat();
  for (const k of Object.keys(options)) {
    if (all.includes(k)) continue;
    const hint = suggest(k, all);
    throw new InvalidArgumentError(`${what}: unknown option '${k}'${hint ? `; did you mean '${hint}'?` : ''}`);
  }
}

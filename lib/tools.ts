/**
 * Tool calls in the format of AI21's Jamba chat template: after the assistant's text (if any),
 *
 *     <tool_calls>[
 *         {"name": "get_weather", "arguments": {"location": "Verona"}},
 *         {"name": "...", "arguments": {...}}
 *     ]</tool_calls>
 *
 * which is how the template renders an assistant message's `tool_calls`, so it is what a Jamba
 * model writes to call tools. The reply is parsed into OpenAI's `tool_calls` (arguments as a JSON
 * string). `toolChoice: 'required'` or a named function forces that format by constrained
 * decoding (an xgrammar structural tag): the call block, then each call's arguments valid under
 * its function's `parameters` schema.
 */
import type { ConstraintSpec } from './constraints/grammar';
import { InvalidArgumentError } from './errors';

/** OpenAI's `tool_choice`. */
export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } };

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

const OPEN = '<tool_calls>', CLOSE = '</tool_calls>';

interface FunctionTool {
  name: string;
  parameters: Record<string, unknown> | boolean;
}

/** The functions of `tools` (OpenAI's `{ type: 'function', function }`, or bare functions as the template also takes). */
function functions(tools: unknown[]): FunctionTool[] {
  return tools.map((t, i) => {
    const f = (t as { type?: unknown; function?: unknown })?.type === 'function' ? (t as { function: unknown }).function : t;
    const name = (f as { name?: unknown } | null)?.name;
    if (typeof name !== 'string' || !name) throw new InvalidArgumentError(`tools[${i}] must be a function with a name`);
    const parameters = (f as { parameters?: unknown }).parameters ?? { type: 'object' };
    if (typeof parameters !== 'boolean' && (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters)))
      throw new InvalidArgumentError(`tools[${i}].parameters must be a JSON schema object`);
    return { name, parameters: parameters as FunctionTool['parameters'] };
  });
}

/**
 * Checks `toolChoice` against `tools`; the constraint it needs (null for 'auto' and 'none'). With
 * `parallel` false (or a named function), exactly one call.
 */
export function toolConstraint(tools: unknown[] | undefined, choice: unknown, parallel = true): ConstraintSpec | null {
  if (choice === undefined || choice === null || choice === 'auto' || choice === 'none') return null;
  const named = (choice as { type?: unknown; function?: { name?: unknown } })?.type === 'function' ? (choice as { function?: { name?: unknown } }).function?.name : undefined;
  if (choice !== 'required' && typeof named !== 'string')
    throw new InvalidArgumentError("toolChoice must be 'auto', 'none', 'required' or { type: 'function', function: { name } }");
  if (!tools?.length) throw new InvalidArgumentError('toolChoice asks for a tool call, but there are no tools');
  let fns = functions(tools);
  if (named !== undefined) {
    fns = fns.filter((f) => f.name === named);
    if (!fns.length) throw new InvalidArgumentError(`toolChoice names the function '${String(named)}', which is not among the tools`);
  }
  const call = (f: FunctionTool) => ({
    type: 'tag', begin: `{"name": ${JSON.stringify(f.name)}, "arguments": `, content: { type: 'json_schema', json_schema: f.parameters }, end: '}',
  });
  const format = {
    type: 'tag', begin: ` ${OPEN}[\n    `, end: `\n]${CLOSE}`,
    content: { type: 'tags_with_separator', tags: fns.map(call), separator: ',\n    ', at_least_one: true, stop_after_first: named !== undefined || !parallel },
  };
  return { kind: 'structural_tag', tag: JSON.stringify({ type: 'structural_tag', format }) };
}

/**
 * Splits a reply into its text and its tool calls (null when it makes none). A call block cut
 * short (no closing tag, or JSON that does not parse) is left in the text.
 */
export function parseToolCalls(text: string, idPrefix: string): { content: string; calls: ToolCall[] } | null {
  const at = text.indexOf(OPEN);
  if (at < 0) return null;
  const end = text.indexOf(CLOSE, at);
  if (end < 0) return null;
  let list: unknown;
  try {
    list = JSON.parse(text.slice(at + OPEN.length, end));
  } catch {
    return null;
  }
  if (!Array.isArray(list) || list.length === 0) return null;
  const calls: ToolCall[] = [];
  for (const [i, c] of list.entries()) {
    const { name, arguments: args } = (c ?? {}) as { name?: unknown; arguments?: unknown };
    if (typeof name !== 'string') return null;
    calls.push({ id: `${idPrefix}-${i}`, type: 'function', function: { name, arguments: typeof args === 'string' ? args : JSON.stringify(args ?? {}) } });
  }
  return { content: (text.slice(0, at) + text.slice(end + CLOSE.length)).trim(), calls };
}

/** How much of `text`'s end could be the start of a call block: held back from a stream until it is known. */
export function possibleCallStart(text: string): number {
  const at = text.indexOf(OPEN);
  if (at >= 0) return text.length - at;
  for (let n = Math.min(OPEN.length - 1, text.length); n > 0; n--) if (OPEN.startsWith(text.slice(-n))) return n;
  return 0;
}

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
 * Splits a reply, as it streams, into the text to show and the tool calls it makes, so that the
 * template's markup never reaches the text. Text that may begin a call block is held back until
 * it is known not to; each call is returned as soon as its JSON object closes; a call cut short
 * (by `maxTokens`, say) is dropped with the rest of its block. The whitespace around a block is
 * the template's, not the reply's: it is dropped too.
 */
export class ToolCallStream {
  private state: 'text' | 'block' | 'after' = 'text';
  private held = '';  // text not yet shown (in 'text' and 'after': a possible block start or whitespace)
  private block = '';  // the block after its opening tag, not yet parsed
  private pos = 0;  // how far `block` is parsed
  private expect: 'open' | 'item' | 'sep' | 'close' = 'open';
  private broken = false;  // the block is not in the template's format: the rest of it is dropped
  private shown = false;
  /** The calls found so far, in order. */
  readonly calls: ToolCall[] = [];
  /** Whether a call block opened and closed. */
  closed = false;

  constructor(private readonly idPrefix: string) {}

  /** Takes the next piece of the reply; returns the text now safe to show and the calls that closed. */
  push(piece: string): { text: string; calls: ToolCall[] } {
    const before = this.calls.length;
    let text = '';
    if (this.state === 'block') this.block += piece;
    else this.held += piece;
    if (this.state === 'text') {
      const at = this.held.indexOf(OPEN);
      if (at >= 0) {
        text = this.show(this.held.slice(0, at).trimEnd());
        this.block = this.held.slice(at + OPEN.length);
        this.held = '';
        this.state = 'block';
      } else {
        // Keep back what could start the tag, and whitespace that would go if it did.
        const keep = partialOpen(this.held);
        const cut = this.held.slice(0, this.held.length - keep).trimEnd().length;
        text = this.show(this.held.slice(0, cut));
        this.held = this.held.slice(cut);
      }
    }
    if (this.state === 'block') this.parse();
    if (this.state === 'after') {
      const rest = this.shown ? this.held : this.held.trimStart();
      const body = rest.trimEnd();
      if (body) {
        text += this.show(rest.slice(0, body.length));
        this.held = rest.slice(body.length);
      } else {
        this.held = rest;
      }
    }
    return { text, calls: this.calls.slice(before) };
  }

  /**
   * The end of the reply: the text still held that is not markup. A partial opening tag is
   * dropped when the reply was cut short (`cut`), since the model was writing a call.
   */
  end(cut: boolean): string {
    const held = this.held;
    this.held = '';
    if (this.state === 'block') return '';
    if (this.state === 'text' && cut && partialOpen(held) > 0) return this.show(held.slice(0, held.length - partialOpen(held)).trimEnd());
    return this.state === 'after' ? '' : this.show(held);
  }

  private show(t: string): string {
    if (t) this.shown = true;
    return t;
  }

  /** Parses `block` as far as it goes: `[`, call objects separated by commas, `]`, the closing tag. */
  private parse(): void {
    const b = this.block;
    while (!this.broken && this.state === 'block') {
      while (this.pos < b.length && /\s/.test(b[this.pos]!)) this.pos++;
      if (this.pos >= b.length) return;
      const c = b[this.pos]!;
      if (this.expect === 'open') {
        if (c !== '[') this.broken = true;
        this.pos++;
        this.expect = 'item';
      } else if (this.expect === 'item' || this.expect === 'sep') {
        if (this.expect === 'sep' && c === ',') {
          this.pos++;
          this.expect = 'item';
        } else if (c === ']') {
          this.pos++;
          this.expect = 'close';
        } else if (this.expect === 'item' && c === '{') {
          const end = objectEnd(b, this.pos);
          if (end < 0) return;  // the object is still being written
          const call = this.call(b.slice(this.pos, end));
          if (!call) this.broken = true;
          else this.calls.push(call);
          this.pos = end;
          this.expect = 'sep';
        } else {
          this.broken = true;
        }
      } else {
        if (b.length - this.pos < CLOSE.length) {
          if (!CLOSE.startsWith(b.slice(this.pos))) this.broken = true;
          return;
        }
        if (!b.startsWith(CLOSE, this.pos)) {
          this.broken = true;
          return;
        }
        this.held = b.slice(this.pos + CLOSE.length);
        this.block = '';
        this.state = 'after';
        this.closed = true;
      }
    }
  }

  private call(json: string): ToolCall | null {
    let c: unknown;
    try {
      c = JSON.parse(json);
    } catch {
      return null;
    }
    const { name, arguments: args } = (c ?? {}) as { name?: unknown; arguments?: unknown };
    if (typeof name !== 'string') return null;
    return { id: `${this.idPrefix}-${this.calls.length}`, type: 'function', function: { name, arguments: typeof args === 'string' ? args : JSON.stringify(args ?? {}) } };
  }
}

/** How many characters at the end of `text` could begin the opening tag. */
function partialOpen(text: string): number {
  for (let n = Math.min(OPEN.length - 1, text.length); n > 0; n--) if (OPEN.startsWith(text.slice(-n))) return n;
  return 0;
}

/** The index just past the JSON object starting at `from` (a `{`), or -1 if it does not end in `s`. */
function objectEnd(s: string, from: number): number {
  let depth = 0;
  let inString = false;
  for (let i = from; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '{' || c === '[') {
      depth++;
    } else if (c === '}' || c === ']') {
      if (--depth === 0) return i + 1;
    }
  }
  return -1;
}

/**
 * Tokenizer: Hugging Face's `tokenizers` (the Rust library behind transformers' fast tokenizers,
 * shipped with prebuilt binaries for 13 platforms in one npm package), so ids match transformers
 * exactly. Encoding runs off the JS thread and returns a Promise; decoding is synchronous.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer } from 'tokenizers';
import { InvalidArgumentError, TokenizerError } from './errors';

export interface EncodeOptions {
  /** Add the BOS token as the checkpoint's post-processor does (default true). */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, pad, …) from the text (default true). */
  skipSpecialTokens?: boolean;
}

interface TokenizerJson {
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
  model?: { byte_fallback?: boolean };
  pre_tokenizer?: { type?: string; pretokenizers?: Array<{ type?: string }> } | null;
}

/** GPT-2's byte-level alphabet: the character standing for each byte. */
const BYTE_LEVEL = (() => {
  const printable = [...Array.from({ length: 94 }, (_, i) => 33 + i), ...Array.from({ length: 12 }, (_, i) => 161 + i), ...Array.from({ length: 82 }, (_, i) => 174 + i)];
  const map = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) map.set(String.fromCodePoint(printable.includes(b) ? b : 256 + extra++), b);
  return map;
})();

/** How a tokenizer's token strings map to bytes (xgrammar's vocabulary types). */
export type VocabType = 'byte_fallback' | 'byte_level' | 'raw';

function vocabTypeOf(json: TokenizerJson): VocabType {
  if (json.model?.byte_fallback) return 'byte_fallback';
  const pre = json.pre_tokenizer;
  const types = [pre?.type, ...(pre?.pretokenizers ?? []).map((p) => p.type)];
  return types.includes('ByteLevel') ? 'byte_level' : 'raw';
}

export class JambaTokenizer {
  private readonly tok: Tokenizer;
  private readonly special: Set<number>;
  private readonly idToToken: string[];
  private readonly decoder: ReturnType<Tokenizer['getDecoder']>;
  readonly vocabSize: number;
  /** How token strings encode bytes: SentencePiece byte fallback (`<0xNN>`, '▁' for a space), GPT-2 byte level, or raw text. */
  readonly vocabType: VocabType;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;

  private constructor(tok: Tokenizer, json: TokenizerJson, config: Record<string, unknown>) {
    this.tok = tok;
    this.special = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
    this.vocabSize = tok.getVocabSize(true);
    this.vocabType = vocabTypeOf(json);
    this.idToToken = Array.from({ length: this.vocabSize }, (_, i) => tok.idToToken(i) ?? '');
    this.decoder = tok.getDecoder();  // fetched once: decode runs for every generated token
    const idOf = (key: string): number | null => {
      const v = config[key];
      const content = typeof v === 'string' ? v : (v as { content?: string } | undefined)?.content;
      return content === undefined ? null : tok.tokenToId(content);
    };
    this.bosTokenId = idOf('bos_token');
    this.eosTokenId = idOf('eos_token');
    this.padTokenId = idOf('pad_token');
  }

  /** Loads `tokenizer.json` and, when present, `tokenizer_config.json` from a model folder. */
  static fromDir(dir: string): JambaTokenizer {
    const file = path.join(dir, 'tokenizer.json');
    let json: TokenizerJson;
    let tok: Tokenizer;
    try {
      json = JSON.parse(fs.readFileSync(file, 'utf8')) as TokenizerJson;
      tok = Tokenizer.fromFile(file);
    } catch (e) {
      throw new TokenizerError(`${file}: cannot load tokenizer: ${(e as Error).message}`, { cause: e });
    }
    let config: Record<string, unknown> = {};
    const cfgFile = path.join(dir, 'tokenizer_config.json');
    if (fs.existsSync(cfgFile)) {
      try {
        config = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
      } catch (e) {
        throw new TokenizerError(`${cfgFile}: not valid JSON: ${(e as Error).message}`, { cause: e });
      }
    }
    return new JambaTokenizer(tok, json, config);
  }

  /** Text to ids. */
  async encode(text: string, options: EncodeOptions = {}): Promise<number[]> {
    if (typeof text !== 'string') throw new InvalidArgumentError('encode: text must be a string');
    const enc = await this.tok.encode(text, null, { addSpecialTokens: options.addSpecialTokens ?? true });
    return enc.getIds();
  }

  /** Ids to text, exactly as transformers' `decode` (one leading space is stripped by the decoder). */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    const tokens: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
        throw new InvalidArgumentError(`decode: ids[${i}] = ${id} is not a token id below ${this.vocabSize}`);
      if (skip && this.special.has(id)) continue;
      tokens.push(this.idToToken[id]!);
    }
    return this.decoder ? this.decoder.decode(tokens) : tokens.join('');
  }

  /**
   * The bytes a token stands for in text: `▁the` is " the", `<0xE2>` the byte 0xE2 (a piece of a
   * UTF-8 character), a GPT-2 byte-level token its bytes, a special token its own text.
   */
  tokenBytes(id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new InvalidArgumentError(`tokenBytes: ${id} is not a token id below ${this.vocabSize}`);
    const t = this.idToToken[id]!;
    if (this.special.has(id)) return Buffer.from(t, 'utf8');
    if (this.vocabType === 'byte_fallback') {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
      return m ? Uint8Array.of(parseInt(m[1]!, 16)) : Buffer.from(t.replace(/▁/g, ' '), 'utf8');
    }
    if (this.vocabType === 'byte_level') return Uint8Array.from(Array.from(t, (c) => BYTE_LEVEL.get(c) ?? 0x3f));
    return Buffer.from(t, 'utf8');
  }

  /** Every token's string as the vocabulary holds it (`▁the`, `<0x0A>`), by id. */
  tokenStrings(): readonly string[] {
    return this.idToToken;
  }

  isSpecial(id: number): boolean {
    return this.special.has(id);
  }
}

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
}

export class JambaTokenizer {
  private readonly tok: Tokenizer;
  private readonly special: Set<number>;
  private readonly idToToken: string[];
  private readonly decoder: ReturnType<Tokenizer['getDecoder']>;
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;

  private constructor(tok: Tokenizer, json: TokenizerJson, config: Record<string, unknown>) {
    this.tok = tok;
    this.special = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
    this.vocabSize = tok.getVocabSize(true);
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

  isSpecial(id: number): boolean {
    return this.special.has(id);
  }
}

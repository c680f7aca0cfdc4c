/**
 * Loads xgrammar (the grammar engine vLLM, SGLang and TensorRT-LLM use), as the registry ships it:
 * `@mlc-ai/web-xgrammar`, a WebAssembly build in one UMD bundle inside a package marked as an ES
 * module. Node 20 would load it as ESM, where the bundle's Emscripten code finds no `require`,
 * `__filename` or `__dirname`; compiled here as the CommonJS script it also is, it gets all three
 * and returns its classes as module exports, the same way under plain Node and under ts-jest.
 * Loaded once, on the first constrained generation.
 */
import fs from 'node:fs';
import Module from 'node:module';
import path from 'node:path';
import type * as Xgrammar from '@mlc-ai/web-xgrammar';
import { InvalidArgumentError } from '../errors';

export type XgrammarModule = typeof Xgrammar;

let loaded: XgrammarModule | undefined;

type Compilable = Module & { _compile(code: string, file: string): void };

export function xgrammar(): XgrammarModule {
  if (loaded) return loaded;
  let file: string;
  try {
    file = require.resolve('@mlc-ai/web-xgrammar');
  } catch (e) {
    throw new InvalidArgumentError(`constrained decoding needs the @mlc-ai/web-xgrammar package: ${(e as Error).message}`);
  }
  const m = new Module(file, module) as Compilable;
  m.filename = file;
  m.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(file));
  m._compile(fs.readFileSync(file, 'utf8'), file);
  loaded = m.exports as XgrammarModule;
  return loaded;
}

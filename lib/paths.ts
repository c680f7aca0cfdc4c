/** Where the package lives on disk, whether running from dist/ or from lib/ under ts-jest. */
import fs from 'node:fs';
import path from 'node:path';

let root: string | undefined;

export function packageRoot(): string {
  if (root) return root;
  let dir = __dirname;
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj) && (JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string }).name === 'jamba-node') {
      root = dir;
      return dir;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`jamba-node: cannot find the package root above ${__dirname}`);
    dir = up;
  }
}

/** The package's version, from its package.json. */
export function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/** The model shipped in the package: a 3.1 M-parameter Jamba trained on tiny Shakespeare. */
export function defaultModelDir(): string {
  return path.join(packageRoot(), 'models', 'jamba-tiny-shakespeare');
}

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Copies a model folder (all files, or only `only`) to a fresh temporary folder to corrupt. */
export function copyModel(src: string, only?: (f: string) => boolean): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-copy-'));
  for (const f of fs.readdirSync(src)) {
    if (f.startsWith('reference') || f.startsWith('experts_int8')) continue;
    if (only && !only(f)) continue;
    fs.copyFileSync(path.join(src, f), path.join(dir, f));
    fs.chmodSync(path.join(dir, f), 0o644);  // fixtures may be read-only (a packed or mounted checkout); the copy must be editable
  }
  return dir;
}

export function editJson(file: string, edit: (j: Record<string, unknown>) => void): void {
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(j);
  fs.writeFileSync(file, JSON.stringify(j));
}

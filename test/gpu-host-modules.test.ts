/**
 * The GPU host has no npm: scripts/prepare-gpu-run.sh packs the few modules that the GPU script
 * (dist/bench/gpu.js) loads. A module beyond those (the server's fastify, through lib/index, say)
 * would stop the whole device run before its first check, and a run is scarce. So the script is
 * loaded here with every bare import outside the packed set refused.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.join(__dirname, '..');

test('the GPU script loads with only the modules scripts/prepare-gpu-run.sh packs', () => {
  const script = fs.readFileSync(path.join(root, 'scripts', 'prepare-gpu-run.sh'), 'utf8');
  const packed = [...new Set([...script.matchAll(/node_modules\/((?:@[\w.-]+\/)?[\w.-]+)/g)].map((m) => m[1]!))];
  expect(packed).toContain('node-gyp-build');
  const hook = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'jamba-gpu-host-')), 'hook.js');
  fs.writeFileSync(hook, `
    const Module = require('module');
    const packed = new Set(${JSON.stringify(packed)});
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, ...rest) {
      const bare = !request.startsWith('.') && !request.startsWith('/') && !Module.isBuiltin(request);
      const name = request.startsWith('@') ? request.split('/').slice(0, 2).join('/') : request.split('/')[0];
      if (bare && !packed.has(name)) throw new Error('the GPU host has no module ' + request);
      return resolve.call(this, request, ...rest);
    };
  `);
  // Past its imports, the script stops at the missing CUDA backend or device here; only a refused module fails this test.
  const r = spawnSync(process.execPath, ['-r', hook, path.join(root, 'dist', 'bench', 'gpu.js'), '--part', 'train'],
    { encoding: 'utf8', timeout: 60_000, env: { ...process.env, JAMBA_TEST_GPU: '' } });
  const out = `${r.stdout}${r.stderr}`;
  expect(out).not.toMatch(/the GPU host has no module|Cannot find module/);
  expect(out).toMatch(/bench\/gpu: this build has no CUDA backend|no_device|no CUDA device|cudaGetDeviceCount|CUDA/);
});

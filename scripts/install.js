/**
 * `npm install`'s build of the addon (build/Release/jamba.node), with the CUDA backend wherever a
 * CUDA toolkit is found, as node-llama-cpp detects its backends at install time; nothing is
 * downloaded.
 *
 *   JAMBA_CUDA=AUTO (default)  CUDA when nvcc is found; a failed CUDA build falls back to the CPU
 *                              addon with one line naming its log
 *   JAMBA_CUDA=ON              CUDA or fail
 *   JAMBA_CUDA=OFF             the CPU addon only
 *   JAMBA_CUDA_ARCHS="80 90"   the GPU architectures (sm_80: A100; sm_90: H100, H200), plus PTX of
 *                              the newest for later GPUs
 *   JAMBA_CUDA_WERROR=1        nvcc warnings are errors (CI)
 *
 * The outcome goes to build/jamba-build.json, which the library reads to say why a build has no
 * CUDA backend when `device: 'cuda'` is asked for.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { findCudaToolkit } = require('./cuda-toolkit');

const root = path.resolve(__dirname, '..');
const say = (line) => process.stderr.write(`jamba-node: ${line}\n`);

function mode() {
  const v = (process.env.JAMBA_CUDA || 'AUTO').toUpperCase();
  if (['OFF', '0', 'FALSE', 'NO'].includes(v)) return 'OFF';
  if (['ON', '1', 'TRUE', 'YES'].includes(v)) return 'ON';
  if (v === 'AUTO') return 'AUTO';
  say(`JAMBA_CUDA must be AUTO, ON or OFF, got ${JSON.stringify(process.env.JAMBA_CUDA)}`);
  process.exit(1);
}

/** node-gyp: the one npm runs scripts with, else npm's own copy, else the PATH's. */
function nodeGyp(args, env, capture) {
  const bundled = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const js = process.env.npm_config_node_gyp || (fs.existsSync(bundled) ? bundled : null);
  // Node's own headers, beside this node binary, so that node-gyp never downloads them (npm
  // passes its nodedir; a plain `node scripts/install.js` does not).
  const nodedir = path.resolve(process.execPath, '..', '..');
  if (!process.env.npm_config_nodedir && fs.existsSync(path.join(nodedir, 'include', 'node', 'node_api.h'))) args = [...args, `--nodedir=${nodedir}`];
  const [cmd, argv] = js ? [process.execPath, [js, ...args]] : ['node-gyp', args];
  const r = spawnSync(cmd, argv, { cwd: root, env, stdio: capture ? 'pipe' : 'inherit', encoding: 'utf8', maxBuffer: 1 << 28 });
  return { ok: r.status === 0, output: capture ? `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` : '' };
}

function nvccFlags() {
  const archs = (process.env.JAMBA_CUDA_ARCHS || '80 90').split(/[\s,;]+/).filter(Boolean);
  if (!archs.length || archs.some((a) => !/^\d+a?$/.test(a))) {
    say(`JAMBA_CUDA_ARCHS must list architectures such as "80 90", got ${JSON.stringify(process.env.JAMBA_CUDA_ARCHS)}`);
    process.exit(1);
  }
  const flags = archs.map((a) => `-gencode arch=compute_${a},code=sm_${a}`);
  flags.push(`-gencode arch=compute_${archs[archs.length - 1]},code=compute_${archs[archs.length - 1]}`);
  if (process.env.JAMBA_CUDA_WERROR === '1') flags.push('-Xcompiler -Wall,-Wextra -Werror all-warnings');
  return { archs, flags: flags.join(' ') };
}

/** What the last install recorded, if anything. */
function previous() {
  try {
    return JSON.parse(fs.readFileSync(path.join(root, 'build', 'jamba-build.json'), 'utf8'));
  } catch {
    return null;
  }
}

function main() {
  const cuda = mode();
  const jobs = '--jobs=max';
  const base = { ...process.env, JAMBA_NVCC: '', JAMBA_CUDA_HOME: '', JAMBA_CUDA_LIB: '', JAMBA_NVCC_FLAGS: '' };
  let outcome = { cuda: false, reason: 'JAMBA_CUDA=OFF' };
  let failed = false;
  if (cuda !== 'OFF') {
    const kit = findCudaToolkit();
    if (!kit) {
      outcome = { cuda: false, reason: 'no CUDA toolkit (nvcc) was found at install time (CUDA_HOME, CUDA_PATH, PATH, /usr/local/cuda)' };
      if (cuda === 'ON') {
        say(`JAMBA_CUDA=ON, but ${outcome.reason}`);
        process.exit(1);
      }
    } else {
      const { archs, flags } = nvccFlags();
      say(`building with the CUDA backend (${kit.nvcc}, sm_${archs.join(', sm_')}; JAMBA_CUDA=OFF skips it); this takes a few minutes`);
      // make tracks the compile and link commands but not nvcc's: objects made with other CUDA
      // settings (or unknown ones) are cleaned away first.
      const settings = { nvcc: kit.nvcc, home: kit.home, flags };
      const same = JSON.stringify(previous()?.settings) === JSON.stringify(settings);
      const r = nodeGyp([...(same ? ['configure', 'build'] : ['rebuild']), jobs], { ...base, JAMBA_NVCC: kit.nvcc, JAMBA_CUDA_HOME: kit.home, JAMBA_CUDA_LIB: kit.lib, JAMBA_NVCC_FLAGS: flags }, true);
      if (r.ok) {
        fs.writeFileSync(path.join(root, 'build', 'jamba-build.json'), JSON.stringify({ cuda: true, archs, settings }, null, 2));
        say('built with the CUDA backend');
        return;
      }
      if (cuda === 'ON') {
        process.stderr.write(r.output);
        say('the CUDA build failed (JAMBA_CUDA=ON)');
        process.exit(1);
      }
      const log = path.join('build', 'cuda-build.log');
      fs.mkdirSync(path.join(root, 'build'), { recursive: true });
      fs.writeFileSync(path.join(root, log), r.output);
      outcome = { cuda: false, reason: `the CUDA build failed at install time (its log: ${path.join(root, log)})` };
      failed = true;
    }
  }
  if (!nodeGyp(['configure', 'build', jobs], base, false).ok) process.exit(1);
  if (failed) say(`${outcome.reason}; built the CPU backend only`);
  fs.writeFileSync(path.join(root, 'build', 'jamba-build.json'), JSON.stringify(outcome, null, 2));
}

main();

/**
 * Finds the CUDA toolkit the install build compiles with: nvcc from CUDA_HOME or CUDA_PATH, then
 * PATH, then /usr/local/cuda, with the folder holding its headers and libcudart_static.a.
 * Plain CommonJS with no dependencies: it runs during `npm install`, before anything is built.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

function executable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The toolkit's folder of libraries (libcudart_static.a), or null. */
function libDir(home) {
  for (const d of ['lib64', 'lib', path.join('targets', `${process.arch === 'arm64' ? 'sbsa' : 'x86_64'}-linux`, 'lib')])
    if (fs.existsSync(path.join(home, d, 'libcudart_static.a'))) return path.join(home, d);
  return null;
}

/** { nvcc, home, lib } of the first complete toolkit found, or null (always on other systems than Linux, which binding.gyp's CUDA rule is written for). */
function findCudaToolkit(env = process.env) {
  if (process.platform !== 'linux') return null;
  const nvccs = [];
  for (const v of [env.CUDA_HOME, env.CUDA_PATH]) if (v) nvccs.push(path.join(v, 'bin', 'nvcc'));
  for (const dir of (env.PATH || '').split(path.delimiter)) if (dir) nvccs.push(path.join(dir, 'nvcc'));
  nvccs.push('/usr/local/cuda/bin/nvcc');
  for (const nvcc of nvccs) {
    if (!executable(nvcc)) continue;
    // nvcc may be a link or a wrapper script (/usr/local/bin/nvcc → /usr/local/cuda-13.0/bin/nvcc).
    const homes = [path.dirname(path.dirname(fs.realpathSync(nvcc))), env.CUDA_HOME, env.CUDA_PATH, '/usr/local/cuda'].filter(Boolean);
    for (const home of homes) {
      const lib = libDir(home);
      if (lib && fs.existsSync(path.join(home, 'include', 'cuda_runtime_api.h'))) return { nvcc, home, lib };
    }
  }
  return null;
}

module.exports = { findCudaToolkit };

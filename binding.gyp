{
  # The install build (scripts/install.js runs node-gyp). The CPU sources always; the CUDA
  # backend when the install script found a CUDA toolkit and passed it in JAMBA_NVCC and friends
  # (csrc/sources.json's 'cuda' list: .cu files through nvcc, the glue through the host compiler).
  "variables": {
    "jamba_nvcc": "<!(node -p \"process.env.JAMBA_NVCC || ''\")",
    "jamba_cuda_home": "<!(node -p \"process.env.JAMBA_CUDA_HOME || ''\")",
    "jamba_cuda_lib": "<!(node -p \"process.env.JAMBA_CUDA_LIB || ''\")",
    "jamba_nvcc_flags": ["<!@(node -p \"process.env.JAMBA_NVCC_FLAGS || ''\")"]
  },
  "targets": [
    {
      "target_name": "jamba",
      "sources": ["<!@(node -p \"require('./csrc/sources.json').cpu.join(' ')\")"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags": ["-O3", "-fno-math-errno"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fno-math-errno", "<!(node -p \"process.env.JAMBA_PORTABLE ? '-mavx2 -mfma -mf16c' : '-march=native'\")"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3", "-fno-math-errno"]
      },
      "conditions": [
        ["jamba_nvcc!=''", {
          "sources": ["<!@(node -p \"require('./csrc/sources.json').cuda.join(' ')\")"],
          "defines": ["JAMBA_WITH_CUDA"],
          "include_dirs": ["<(jamba_cuda_home)/include"],
          "libraries": ["<(jamba_cuda_lib)/libcudart_static.a", "-ldl", "-lrt", "-lpthread"],
          "rules": [
            {
              "rule_name": "nvcc",
              "extension": "cu",
              "inputs": ["<(RULE_INPUT_PATH)"],
              "outputs": ["<(INTERMEDIATE_DIR)/<(RULE_INPUT_ROOT).o"],
              "action": ["<(jamba_nvcc)", "-std=c++17", "-O3", "-Xcompiler", "-fPIC", "<@(jamba_nvcc_flags)", "-c", "<(RULE_INPUT_PATH)", "-o", "<@(_outputs)"],
              "message": "nvcc <(RULE_INPUT_PATH)",
              "process_outputs_as_sources": 1
            }
          ]
        }]
      ]
    }
  ]
}

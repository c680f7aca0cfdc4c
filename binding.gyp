{
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
      }
    }
  ]
}

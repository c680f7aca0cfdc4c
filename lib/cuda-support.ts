/**
 * Whether the CUDA kernels can run a model, decided once at load from its config (ggml's
 * supports_op, per model rather than per op): every field the kernels bound, against the limits
 * the build reports (csrc/cuda/kernels.h), before any weight is uploaded. `device: 'cuda'` throws
 * the first field out of bounds; `device: 'auto'` falls back to the CPU, which runs every shape.
 */
import type { JambaConfig } from './config';
import { UnsupportedDeviceError } from './errors';
import type { CudaLimits } from './native';

export function cudaUnsupported(config: JambaConfig, limits: CudaLimits): UnsupportedDeviceError | null {
  const mamba = config.layerTypes.includes('mamba');
  const attention = config.layerTypes.includes('attention');
  const moe = config.layerNumExperts.some((e) => e > 1);
  const group = config.numAttentionHeads / config.numKeyValueHeads;
  const checks: Array<[boolean, string, string]> = [
    [mamba && config.mambaDState > limits.maxDState, 'mamba_d_state',
      `${config.mambaDState} states per channel; the CUDA selective scan supports up to ${limits.maxDState}`],
    [mamba && (config.mambaDConv < limits.minConv || config.mambaDConv > limits.maxConv), 'mamba_d_conv',
      `${config.mambaDConv} taps; the CUDA conv1d supports ${limits.minConv} to ${limits.maxConv}`],
    [attention && config.headDim > limits.maxHeadDim, 'num_attention_heads',
      `head_dim (hidden_size / num_attention_heads) is ${config.headDim}; the CUDA prefill attention supports up to ${limits.maxHeadDim}`],
    [attention && group > limits.maxGroup, 'num_key_value_heads',
      `${group} query heads per KV head; the CUDA attention supports up to ${limits.maxGroup}`],
    [moe && config.numExperts > limits.maxExperts, 'num_experts',
      `${config.numExperts} experts; the CUDA routing supports up to ${limits.maxExperts}`],
  ];
  for (const [bad, field, why] of checks) if (bad) return new UnsupportedDeviceError(`${why} (the CPU backend runs it: device 'cpu' or 'auto')`, field);
  return null;
}

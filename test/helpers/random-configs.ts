/**
 * Jamba configurations the fixtures do not have, written as random checkpoints
 * (random-checkpoint.ts): the CPU engine is held to the float64 reference on CASES
 * (test/random-configs.test.ts), and the CUDA backend on CASES and GPU_CASES (test/gpu/model-checks.ts).
 */
export type RandomCase = [label: string, config: Record<string, unknown>, dtype: 'F32' | 'BF16' | 'F16', shards: number];

export const BASE = { vocab_size: 1030, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 };

export const CASES: RandomCase[] = [
  ['top-1, d_conv 3, no conv bias, tied, eps 1e-5, f32', {
    hidden_size: 32, intermediate_size: 48, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2,
    attn_layer_period: 2, attn_layer_offset: 1, expert_layer_period: 2, expert_layer_offset: 0, num_experts: 3,
    num_experts_per_tok: 1, mamba_d_state: 8, mamba_d_conv: 3, mamba_conv_bias: false, tie_word_embeddings: true,
    rms_norm_eps: 1e-5, mamba_dt_rank: 'auto',
  }, 'F32', 1],
  ['top-3 of 5, MHA, d_state 24, expand 3, proj bias, f16 sharded', {
    hidden_size: 40, intermediate_size: 56, num_hidden_layers: 3, num_attention_heads: 5, num_key_value_heads: 5,
    attn_layer_period: 3, attn_layer_offset: 2, expert_layer_period: 3, expert_layer_offset: 1, num_experts: 5,
    num_experts_per_tok: 3, mamba_d_state: 24, mamba_d_conv: 4, mamba_expand: 3, mamba_dt_rank: 5,
    mamba_proj_bias: true,
  }, 'F16', 3],
  ['every layer MoE, GQA 8:1, d_conv 2, bf16, many heads', {
    hidden_size: 64, intermediate_size: 40, num_hidden_layers: 5, num_attention_heads: 8, num_key_value_heads: 1,
    attn_layer_period: 4, attn_layer_offset: 0, expert_layer_period: 1, expert_layer_offset: 0, num_experts: 6,
    num_experts_per_tok: 2, mamba_d_state: 16, mamba_d_conv: 2, mamba_dt_rank: 7, rms_norm_eps: 1e-3,
  }, 'BF16', 2],
];

/** More shapes for the GPU, where a model runs in well under a second: schedules of one kind, dense only, MQA, wider states. */
export const GPU_CASES: RandomCase[] = [
  ['all Mamba, dense, d_state 32, d_conv 4 with no conv bias, proj bias, f32', {
    hidden_size: 48, intermediate_size: 64, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 4,
    attn_layer_period: 4, attn_layer_offset: 3, expert_layer_period: 1, expert_layer_offset: 0, num_experts: 1, num_experts_per_tok: 1,
    mamba_d_state: 32, mamba_d_conv: 4, mamba_conv_bias: false, mamba_proj_bias: true,
  }, 'F32', 1],
  ['all attention, MQA 8:1, head_dim 16, 16 experts top-2, bf16', {
    hidden_size: 128, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 8, num_key_value_heads: 1,
    attn_layer_period: 1, attn_layer_offset: 0, expert_layer_period: 2, expert_layer_offset: 1, num_experts: 16, num_experts_per_tok: 2,
  }, 'BF16', 1],
  ['Jamba schedule, dense only, GQA 2:1, d_conv 2, tied, f16 sharded', {
    hidden_size: 64, intermediate_size: 96, num_hidden_layers: 8, num_attention_heads: 4, num_key_value_heads: 2,
    attn_layer_period: 8, attn_layer_offset: 4, expert_layer_period: 1, expert_layer_offset: 0, num_experts: 1, num_experts_per_tok: 1,
    mamba_d_state: 16, mamba_d_conv: 2, tie_word_embeddings: true,
  }, 'F16', 2],
];

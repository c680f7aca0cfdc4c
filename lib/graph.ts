/**
 * The model graph: from a validated config, which tensors a Jamba checkpoint must hold (released
 * names and shapes) and how they wire into layers (attention or Mamba mixer, dense or MoE
 * feed-forward). The native executor receives this plan and runs it.
 */
import { JambaConfig } from './config';
import { CheckpointError } from './errors';
import type { LayerSpec, MlpSpec, ModelPlanSpec, TensorSourceSpec } from './native';
import { TensorInfo } from './safetensors';

export interface ExpectedTensor {
  name: string;
  shape: number[];
}

const mlpNames = (prefix: string) => ['gate_proj', 'up_proj', 'down_proj'].map((p) => `${prefix}.${p}.weight`);

/** Every tensor a checkpoint of this config holds, with its shape, in the released layout. */
export function expectedTensors(cfg: JambaConfig): ExpectedTensor[] {
  const H = cfg.hiddenSize, I = cfg.intermediateSize, V = cfg.vocabSize;
  const Di = cfg.mambaDInner, N = cfg.mambaDState, R = cfg.mambaDtRank;
  const hd = cfg.headDim;
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [V, H] }];
  cfg.layerTypes.forEach((type, i) => {
    const p = `model.layers.${i}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [H] }, { name: `${p}.pre_ff_layernorm.weight`, shape: [H] });
    if (type === 'attention') {
      out.push(
        { name: `${p}.self_attn.q_proj.weight`, shape: [cfg.numAttentionHeads * hd, H] },
        { name: `${p}.self_attn.k_proj.weight`, shape: [cfg.numKeyValueHeads * hd, H] },
        { name: `${p}.self_attn.v_proj.weight`, shape: [cfg.numKeyValueHeads * hd, H] },
        { name: `${p}.self_attn.o_proj.weight`, shape: [H, cfg.numAttentionHeads * hd] },
      );
    } else {
      const m = `${p}.mamba`;
      out.push({ name: `${m}.in_proj.weight`, shape: [2 * Di, H] });
      if (cfg.mambaProjBias) out.push({ name: `${m}.in_proj.bias`, shape: [2 * Di] });
      out.push({ name: `${m}.conv1d.weight`, shape: [Di, 1, cfg.mambaDConv] });
      if (cfg.mambaConvBias) out.push({ name: `${m}.conv1d.bias`, shape: [Di] });
      out.push(
        { name: `${m}.x_proj.weight`, shape: [R + 2 * N, Di] },
        { name: `${m}.dt_proj.weight`, shape: [Di, R] },
        { name: `${m}.dt_proj.bias`, shape: [Di] },
        { name: `${m}.A_log`, shape: [Di, N] },
        { name: `${m}.D`, shape: [Di] },
        { name: `${m}.out_proj.weight`, shape: [H, Di] },
      );
      if (cfg.mambaProjBias) out.push({ name: `${m}.out_proj.bias`, shape: [H] });
      out.push(
        { name: `${m}.dt_layernorm.weight`, shape: [R] },
        { name: `${m}.b_layernorm.weight`, shape: [N] },
        { name: `${m}.c_layernorm.weight`, shape: [N] },
      );
    }
    const ff = `${p}.feed_forward`;
    const shapes = [[I, H], [I, H], [H, I]];
    if (cfg.layerNumExperts[i]! > 1) {
      out.push({ name: `${ff}.router.weight`, shape: [cfg.numExperts, H] });
      for (let e = 0; e < cfg.numExperts; e++)
        mlpNames(`${ff}.experts.${e}`).forEach((name, j) => out.push({ name, shape: shapes[j]! }));
    } else {
      mlpNames(ff).forEach((name, j) => out.push({ name, shape: shapes[j]! }));
    }
  });
  out.push({ name: 'model.final_layernorm.weight', shape: [H] });
  if (!cfg.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [V, H] });
  return out;
}

const LOADABLE = new Set(['F32', 'BF16', 'F16']);

/**
 * Checks the checkpoint against the config (every tensor present, none extra, right shapes,
 * float dtypes) and returns the executor's plan. Every problem names the file and tensor.
 */
export function buildPlan(cfg: JambaConfig, tensors: Map<string, TensorInfo>, opts: { expertsInt8: boolean }): ModelPlanSpec {
  const expected = expectedTensors(cfg);
  const wanted = new Set(expected.map((t) => t.name));
  for (const t of expected) {
    const info = tensors.get(t.name);
    if (!info) throw new CheckpointError('is missing from the checkpoint', { tensor: t.name });
    if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i]))
      throw new CheckpointError(`has shape [${info.shape}], the config implies [${t.shape}]`, { file: info.file, tensor: t.name });
    if (!LOADABLE.has(info.dtype))
      throw new CheckpointError(`has dtype ${info.dtype}; checkpoints must be F32, BF16 or F16`, { file: info.file, tensor: t.name });
  }
  for (const [name, info] of tensors) {
    // A tied checkpoint may still carry the (identical) lm_head; it is not read.
    if (!wanted.has(name) && !(cfg.tieWordEmbeddings && name === 'lm_head.weight'))
      throw new CheckpointError('is not part of a Jamba checkpoint with this config', { file: info.file, tensor: name });
  }

  const src = (name: string): TensorSourceSpec => {
    const t = tensors.get(name)!;
    return { name, file: t.file, offset: t.offset, nbytes: t.nbytes, dtype: t.dtype as TensorSourceSpec['dtype'], shape: t.shape };
  };
  const opt = (name: string): TensorSourceSpec | undefined => (wanted.has(name) ? src(name) : undefined);
  const mlp = (prefix: string): MlpSpec => {
    const [gate, up, down] = mlpNames(prefix).map(src) as [TensorSourceSpec, TensorSourceSpec, TensorSourceSpec];
    return { gate, up, down };
  };

  const layers: LayerSpec[] = cfg.layerTypes.map((type, i) => {
    const p = `model.layers.${i}`;
    const moe = cfg.layerNumExperts[i]! > 1;
    const layer: LayerSpec = {
      mixer: type,
      feedForward: moe ? 'moe' : 'dense',
      inputNorm: src(`${p}.input_layernorm.weight`),
      ffNorm: src(`${p}.pre_ff_layernorm.weight`),
    };
    if (type === 'attention') {
      const a = `${p}.self_attn`;
      layer.attention = { q: src(`${a}.q_proj.weight`), k: src(`${a}.k_proj.weight`), v: src(`${a}.v_proj.weight`), o: src(`${a}.o_proj.weight`) };
    } else {
      const m = `${p}.mamba`;
      layer.mamba = {
        inProj: src(`${m}.in_proj.weight`), inProjBias: opt(`${m}.in_proj.bias`),
        convWeight: src(`${m}.conv1d.weight`), convBias: opt(`${m}.conv1d.bias`),
        xProj: src(`${m}.x_proj.weight`), dtProj: src(`${m}.dt_proj.weight`), dtProjBias: src(`${m}.dt_proj.bias`),
        aLog: src(`${m}.A_log`), d: src(`${m}.D`),
        outProj: src(`${m}.out_proj.weight`), outProjBias: opt(`${m}.out_proj.bias`),
        dtNorm: src(`${m}.dt_layernorm.weight`), bNorm: src(`${m}.b_layernorm.weight`), cNorm: src(`${m}.c_layernorm.weight`),
      };
    }
    if (moe) {
      layer.router = src(`${p}.feed_forward.router.weight`);
      layer.experts = Array.from({ length: cfg.numExperts }, (_, e) => mlp(`${p}.feed_forward.experts.${e}`));
    } else {
      layer.mlp = mlp(`${p}.feed_forward`);
    }
    return layer;
  });

  return {
    dims: {
      vocab: cfg.vocabSize, hidden: cfg.hiddenSize, intermediate: cfg.intermediateSize, layers: cfg.numHiddenLayers,
      heads: cfg.numAttentionHeads, kvHeads: cfg.numKeyValueHeads, headDim: cfg.headDim, dInner: cfg.mambaDInner,
      dState: cfg.mambaDState, dConv: cfg.mambaDConv, dtRank: cfg.mambaDtRank, experts: cfg.numExperts,
      topK: cfg.numExpertsPerTok, eps: cfg.rmsNormEps,
    },
    embed: src('model.embed_tokens.weight'),
    finalNorm: src('model.final_layernorm.weight'),
    lmHead: cfg.tieWordEmbeddings ? undefined : src('lm_head.weight'),
    layers,
    expertsInt8: opts.expertsInt8,
  };
}

/** Parameter counts: total, and active per token (top-k of each MoE layer's experts). */
export function parameterCounts(cfg: JambaConfig): { total: number; active: number } {
  let total = 0, inactive = 0;
  const perExpert = 3 * cfg.intermediateSize * cfg.hiddenSize;
  for (const t of expectedTensors(cfg)) total += t.shape.reduce((a, b) => a * b, 1);
  for (const n of cfg.layerNumExperts) if (n > 1) inactive += (n - cfg.numExpertsPerTok) * perExpert;
  return { total, active: total - inactive };
}

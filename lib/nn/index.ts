/** Small trainable networks for training through the frozen model (docs/training.md). */
export { activation, attentionPool, linear, mlp, normal, rmsNorm, rows, seeded, sequential, swigluMlp, transformerLayer } from './layers';
export type { Activation, LinearOptions, Module, Param, Rows } from './layers';
export { adam, gradNorm, gradcheck } from './optim';
export type { AdamOptions, Optimizer } from './optim';

/**
 * Names of the custom kernels this library adds to TF.js, declared once: the backends register them under
 * these names (native and webgpu all of them, wasm the optimiser updates) and the layers, optimisers and attacks
 * run them where the current backend has them.
 *
 * @module
 */

/** Batch norm with the batch statistics, then leaky ReLU (lib/nn/_fused.ts); outputs y, mean, variance. */
export const BN_ACT_TRAIN = "AdvBatchNormActTrain";
/** Gradients of {@link BN_ACT_TRAIN} with respect to x, γ and β. */
export const BN_ACT_GRAD = "AdvBatchNormActGrad";
/** Batch norm with the moving statistics, then leaky ReLU (inference, lib/nn/_fused.ts). */
export const BN_ACT_INFER = "AdvBatchNormActInfer";
/** Gradients of {@link BN_ACT_INFER} with respect to x, γ and β. */
export const BN_ACT_INFER_GRAD = "AdvBatchNormActInferGrad";
/** One Adam update in one pass (lib/train/optim.ts); outputs the variable and both moments. */
export const ADAM_UPDATE = "AdvAdamUpdate";
/** One SGD-with-momentum update in one pass (lib/train/optim.ts); outputs the variable and its velocity. */
export const MOMENTUM_UPDATE = "AdvMomentumUpdate";
/** Per-image standardisation (lib/nn/resnet.ts); outputs y, the means and the reciprocal deviations. */
export const STANDARDIZE = "AdvStandardize";
/** Gradient of {@link STANDARDIZE} with respect to x. */
export const STANDARDIZE_GRAD = "AdvStandardizeGrad";
/** One L∞ PGD update, projected and clipped (lib/attacks/pgd.ts signStep). */
export const PGD_UPDATE = "AdvPgdUpdate";

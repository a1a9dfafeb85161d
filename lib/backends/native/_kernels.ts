/**
 * The kernel tables of the native backend: the TF.js kernels it replaces and the ones only it has, by name.
 *
 * @module
 */
import { type Kernel } from "./_backend.ts";
import { conv2D, conv2DBackpropFilter, conv2DBackpropInput, fusedConv2D } from "./_conv.ts";
import { batchMatMul, fusedMatMul } from "./_matmul.ts";
import { avgPool, avgPoolGrad, maxPool, maxPoolGrad } from "./_pool.ts";
import { BINARY, binary, leakyRelu, select, UNARY, unary } from "./_elementwise.ts";
import { ARITH, broadcastBinary, COMPARE, compare } from "./_broadcast.ts";
import { reduce } from "./_reduce.ts";
import { padV2, slice, tile } from "./_copy.ts";
import { bnActGrad, bnActInfer, bnActInferGrad, bnActTrain, fusedBatchNorm } from "./_batchnorm.ts";
import { adamUpdate, momentumUpdate, pgdUpdate } from "./_updates.ts";
import { standardize, standardizeGrad } from "./_standardize.ts";
import {
  ADAM_UPDATE,
  BN_ACT_GRAD,
  BN_ACT_INFER,
  BN_ACT_INFER_GRAD,
  BN_ACT_TRAIN,
  MOMENTUM_UPDATE,
  PGD_UPDATE,
  STANDARDIZE,
  STANDARDIZE_GRAD,
} from "../kernel_names.ts";

/** Kernels that only the native backend has (the layers of lib/nn/_fused.ts and lib/nn/resnet.ts use them when present). */
export const EXTRA: Record<string, Kernel> = {
  [BN_ACT_TRAIN]: bnActTrain,
  [BN_ACT_GRAD]: bnActGrad,
  [BN_ACT_INFER]: bnActInfer,
  [BN_ACT_INFER_GRAD]: bnActInferGrad,
  [ADAM_UPDATE]: adamUpdate,
  [MOMENTUM_UPDATE]: momentumUpdate,
  [STANDARDIZE]: standardize,
  [STANDARDIZE_GRAD]: standardizeGrad,
  [PGD_UPDATE]: pgdUpdate,
};

/** The kernels this backend replaces, by TF.js kernel name. */
export const OVERRIDES: Record<string, Kernel> = {
  Conv2D: conv2D,
  FusedConv2D: fusedConv2D,
  Conv2DBackpropInput: conv2DBackpropInput,
  Conv2DBackpropFilter: conv2DBackpropFilter,
  BatchMatMul: batchMatMul,
  _FusedMatMul: fusedMatMul,
  MaxPool: maxPool,
  MaxPoolGrad: maxPoolGrad,
  AvgPool: avgPool,
  AvgPoolGrad: avgPoolGrad,
  Sum: reduce("Sum"),
  Mean: reduce("Mean"),
  Select: select,
  LeakyRelu: leakyRelu,
  Slice: slice,
  PadV2: padV2,
  Tile: tile,
  FusedBatchNorm: fusedBatchNorm,
  ...Object.fromEntries(Object.entries(UNARY).map(([name, loop]) => [name, unary(name, loop)])),
  ...Object.fromEntries(
    Object.entries(ARITH).map(([name, f]) => [
      name,
      broadcastBinary(name, f, name in BINARY ? binary(name, BINARY[name]) : undefined),
    ]),
  ),
  ...Object.fromEntries(Object.entries(COMPARE).map(([name, f]) => [name, compare(name, f)])),
};

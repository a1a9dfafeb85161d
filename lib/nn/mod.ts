/**
 * Networks: the MNIST nets (model A's family, model B), the CIFAR-10 ResNet, and the losses.
 *
 * @module
 */
export { CAPACITY_SCALES, capacityShape, logits, mnistNet, type MnistNetShape, MODEL_A } from "./mnist_net.ts";
export { isModelB, MODEL_B, modelB, type ModelBShape, SeededDropout } from "./model_b.ts";
export {
  ChannelPad,
  cifarResNet,
  decayedWeights,
  PerImageStandardization,
  RESNET_SIMPLE,
  RESNET_WIDE,
  type ResNetShape,
} from "./resnet.ts";
export { crossEntropy, cwLoss, dlrLoss, dlrTargetedLoss, isCorrect } from "./losses.ts";

/**
 * Training: natural, FGSM and PGD adversarial training with checkpoints and a cache, the optimisers, and the model zoo.
 *
 * @module
 */
export { Adam, Momentum, type Optimizer } from "./optim.ts";
export {
  isResNet,
  isTrained,
  modelDir,
  optimizerText,
  type TrainConfig,
  type TrainedModel,
  type TrainHistory,
  trainModel,
  type TrainOptions,
  trainStep,
  validateTrainConfig,
} from "./train.ts";
export { loadCheckpoint, loadModel, saveCheckpoint, saveModel } from "./checkpoint.ts";
export {
  capacityConfig,
  type DatasetName,
  MODEL_NAMES,
  MODEL_PAIR,
  type ModelName,
  type Recipe,
  RECIPE_HELP,
  recipeOf,
  RECIPES,
  zooConfig,
} from "./zoo.ts";

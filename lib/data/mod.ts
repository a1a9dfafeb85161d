/**
 * Data: datasets as tensors-to-be (MNIST, CIFAR-10) and CIFAR-10's augmentation.
 *
 * @module
 */
export { type Dataset, gather, imageSize, slice, take } from "./dataset.ts";
export { loadMnist, MNIST_DIR, parseIdxImages, parseIdxLabels } from "./mnist.ts";
export {
  checkEpsScale,
  CIFAR10_ARCHIVE,
  CIFAR10_CLASSES,
  CIFAR10_FILES,
  cifar10CacheDir,
  type Cifar10Options,
  findCifar10Dir,
  loadCifar10,
  parseCifarBatch,
} from "./cifar10.ts";
export { augmentBatch } from "./augment.ts";

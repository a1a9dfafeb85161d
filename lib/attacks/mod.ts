/**
 * Attacks: L∞ PGD (restarts scored per example), FGSM, targeted and CW-loss variants, and accuracy under attack.
 *
 * @module
 */
export { fgsm, perturb, pgd, type PgdOptions, type PgdResult, pgdStep, signStep, validatePgdOptions } from "./pgd.ts";
export { type Accuracy, type EvalOptions, evaluate } from "./eval.ts";
export {
  accuracy,
  type Attack,
  type AttackMethod,
  type AttackOutcome,
  craft,
  mergeOutcomes,
  runSuite,
  type SuiteOptions,
  targetClass,
  validateAdversarial,
  worstCase,
} from "./suite.ts";
export {
  advFile,
  advName,
  attackSlice,
  type Check,
  evaluateRobustness,
  modelChecks,
  outcomeChecks,
  type RobustnessInput,
  type RobustnessResult,
  savedCheck,
  type SlicePart,
  type SuiteRow,
  worstRows,
} from "./robustness.ts";

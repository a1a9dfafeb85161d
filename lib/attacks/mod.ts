/**
 * Attacks: L∞ PGD (restarts scored per example), FGSM, targeted and CW-loss variants, and accuracy under attack;
 * APGD-CE, APGD-T and Square, and the standard run of the three (AutoAttack less FAB-T) with its checks.
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
  modelChecks,
  outcomeChecks,
  type RobustnessInput,
  type RobustnessResult,
  savedCheck,
  type SlicePart,
  type SuiteRow,
  worstRows,
} from "./robustness.ts";
export {
  apgd,
  APGD_ALPHA,
  APGD_RHO,
  apgdCheckpoints,
  type ApgdLoss,
  type ApgdOptions,
  type ApgdResult,
  apgdTargeted,
  type ApgdTargetedOptions,
  type CheckpointState,
  halveStepSize,
  momentumStep,
  projectLinf,
  validateApgdOptions,
} from "./apgd.ts";
export {
  type Scorer,
  square,
  SQUARE_HALVINGS,
  squareFraction,
  type SquareOptions,
  type SquareResult,
  squareSide,
  validateSquareOptions,
} from "./square.ts";
export {
  type AttackStage,
  autoAttack,
  AUTOATTACK_ATTACKS,
  AUTOATTACK_NAME,
  autoAttackChecks,
  type AutoAttackOptions,
  type AutoAttackResult,
  mergeSanity,
  type SanityCounts,
  sanityCounts,
  SQUARE_MARGIN,
} from "./autoattack.ts";

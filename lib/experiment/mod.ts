/**
 * The experiment harness: strict command lines, presets per dataset, the results header, writing and redrawing.
 *
 * @module
 */
export {
  type CommonFlags,
  ensureWritable,
  type ExperimentSpec,
  fsError,
  kebab,
  outFolderArgs,
  parseExperimentArgs,
  runMain,
} from "./cli.ts";
export {
  type AnyExperiment,
  ATTACK_HELP,
  type AttackFields,
  type BaseConfig,
  chooseDatasets,
  datasetFlag,
  DATASETS,
  defineExperiment,
  type Experiment,
  experimentMain,
  gitCommit,
  type Header,
  keepResults,
  loadSplit,
  parseArgsFor,
  presetConfig,
  redrawAll,
  redrawResults,
  type Results,
  type RunContext,
  runExperiment,
  type RunOptions,
  runShard,
  saveResults,
  type ShardReport,
  specFor,
  unitsDir,
  writeResults,
} from "./harness.ts";
export { type TableBody, type TableConfig, tableExperiment, type TableSpec } from "./tables.ts";
export {
  parseShard,
  resolveShard,
  runUnits,
  type Shard,
  type Unit,
  type UnitRecord,
  unitsOf,
  type UnitsReport,
} from "./units.ts";

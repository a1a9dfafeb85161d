/**
 * Core: the TF.js import, user-facing errors, the seeded generator, config hashing and progress lines.
 *
 * @module
 */
export { tf, tfl } from "./tf.ts";
export { check, UserError } from "./errors.ts";
export { Rng } from "./rng.ts";
export { configHash, stableStringify } from "./hash.ts";
export { Progress } from "./progress.ts";
export { writeFileAtomic } from "./fs.ts";

/**
 * Errors meant for the person at the keyboard: experiment scripts print their
 * message as one line and exit non-zero, without a stack trace.
 *
 * @module
 */

/** A bad flag, value, file or checkpoint: the message says what was expected and what was found. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/** Throws a {@link UserError} with `message` unless `condition` holds. */
export function check(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new UserError(typeof message === "string" ? message : message());
}

/**
 * The command line's flags for the protocol's modes: MLLP release 2
 * (`--mllp-release`, `--commit-timeout`), charsets (`--charset`,
 * `--charset-override`, `--strict-charset`, `--allow-wide`, on both
 * `listen` and `send`), batches (`--batches`, `--batch-acks`) and
 * `--original-mode`.
 *
 * @module
 */

import type { BatchAcks } from "../hl7/batch.ts";
import { type CharsetOptions, checkCharsetOptions } from "../hl7/charset.ts";
import { type Flags, positiveFlag, stringFlag, UsageError } from "./common.ts";

/** The flags `listen` takes for the modes (to add to its flag spec). */
export const LISTEN_MODE_FLAGS = {
  boolean: ["strict-charset", "allow-wide", "original-mode"],
  string: [
    "mllp-release",
    "charset",
    "charset-override",
    "batches",
    "batch-acks",
  ],
};

/** The flags `send` takes for the modes (to add to its flag spec). */
export const SEND_MODE_FLAGS = {
  boolean: ["batch", "wait-app-ack", "strict-charset", "allow-wide"],
  string: ["mllp-release", "commit-timeout", "charset", "charset-override"],
};

/** `--mllp-release 1|2`, or `undefined` when absent. */
export function mllpReleaseFlag(flags: Flags): 1 | 2 | undefined {
  const value = choiceFlag(flags, "mllp-release", ["1", "2"]);
  return value === undefined ? undefined : value === "1" ? 1 : 2;
}

/**
 * `--commit-timeout MS`, which needs `--mllp-release 2`, or `undefined`.
 */
export function commitTimeoutFlag(
  flags: Flags,
  release: 1 | 2 | undefined,
): number | undefined {
  const timeout = positiveFlag(flags, "commit-timeout", "milliseconds");
  if (timeout !== undefined && release !== 2) {
    throw new UsageError("--commit-timeout needs --mllp-release 2");
  }
  return timeout;
}

/**
 * The charset options of `listen`'s receiver or `send`'s client from
 * `--charset NAME` (for an empty MSH-18), `--charset-override NAME`,
 * `--strict-charset` and `--allow-wide`, checked as `Receiver.start` and
 * `Client.connect` would check them.
 */
export function charsetFlags(flags: Flags): CharsetOptions | undefined {
  const options: CharsetOptions = {};
  const names = [
    ["charset", "default"],
    ["charset-override", "override"],
  ] as const;
  for (const [flag, key] of names) {
    const name = stringFlag(flags, flag);
    if (name !== undefined) options[key] = name;
  }
  if (flags["strict-charset"] === true) options.invalid = "strict";
  if (flags["allow-wide"] === true) options.allowWide = true;
  if (Object.keys(options).length === 0) return undefined;
  try {
    checkCharsetOptions(options, "charset");
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    const [flag, key] = names.find(([, key]) =>
      error.message.startsWith(`charset.${key} `)
    ) ?? ["charset", "default"];
    // "charset.default "X" is not ..." -> "Invalid --charset "X": not ..."
    const reason = error.message
      .slice(`charset.${key} `.length)
      .replace(/^"[^"]*" /, "")
      .replace(/^is not /, "not ")
      .replace("set charset.allowWide", "give --allow-wide");
    throw new UsageError(`Invalid --${flag} "${options[key]}": ${reason}`);
  }
  return options;
}

/** `--batches each|whole`, or `undefined` when absent. */
export function batchesFlag(flags: Flags): "each" | "whole" | undefined {
  return choiceFlag(flags, "batches", ["each", "whole"]);
}

/** `--batch-acks errors|all`, or `undefined` when absent. */
export function batchAcksFlag(flags: Flags): BatchAcks | undefined {
  return choiceFlag(flags, "batch-acks", ["errors", "all"]);
}

/** A flag that takes one of `choices` (any case), or `undefined`. */
function choiceFlag<T extends string>(
  flags: Flags,
  name: string,
  choices: readonly T[],
): T | undefined {
  const value = stringFlag(flags, name);
  if (value === undefined) return undefined;
  const lower = value.toLowerCase() as T;
  if (!choices.includes(lower)) {
    const expected = choices.length === 2
      ? `${choices[0]} or ${choices[1]}`
      : choices.join(", ");
    throw new UsageError(`Invalid --${name} "${value}": expected ${expected}`);
  }
  return lower;
}

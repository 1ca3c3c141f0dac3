/**
 * Small helpers the dispatch stream, its stages, the client, the queues and
 * the CLI share.
 *
 * @module
 */

import type { Dispatcher, DispatchFunction } from "./types.ts";

/** A dispatcher as a function, whichever form it was given in. */
export function asFunction<C>(
  dispatcher: Dispatcher<C>,
): DispatchFunction<C> {
  return typeof dispatcher === "function"
    ? dispatcher
    : (message, ctx) => dispatcher.dispatch(message, ctx);
}

/** The message of an error, or the thrown value as text. */
export function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Text for an ACK's MSA-3: control characters (which an ACK text must not
 * carry, VT and FS least of all) become spaces, tabs stay, and it is cut to
 * 200 characters.
 */
export function plain(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, " ").slice(0, 200);
}

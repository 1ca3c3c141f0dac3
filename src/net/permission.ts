/**
 * Deno's permission errors in one line that names the flag: what the
 * client, the receiver and the stores throw when the process may not
 * connect, listen, read or write, instead of Deno's `NotCapable` and its
 * stack trace.
 *
 * @module
 */

/**
 * A permission Deno refused, read from its `NotCapable` error.
 *
 * @example Read a refusal
 * ```ts
 * import { missingPermission } from "./permission.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new Deno.errors.NotCapable(
 *   'Requires net access to "127.0.0.1:2575", run again with the --allow-net flag',
 * );
 * assertEquals(missingPermission(error)?.flag, "--allow-net=127.0.0.1:2575");
 * ```
 */
export interface MissingPermission {
  /**
   * The permission: `"net"`, `"read"`, `"write"`, `"env"`, `"sys"`,
   * `"run"`, `"ffi"` or `"import"`; `undefined` when Deno's message does
   * not say.
   */
  name: string | undefined;
  /**
   * What the permission was asked for: `"127.0.0.1:2575"`, a path, a
   * variable's name; `undefined` when Deno's message does not say.
   */
  target: string | undefined;
  /**
   * The flag that grants just that, quoted for a shell when it must be:
   * `--allow-net=127.0.0.1:2575`; `--allow-net` without a target;
   * `undefined` without a name.
   */
  flag: string | undefined;
}

/** Deno 2's wording: `Requires net access to "127.0.0.1:2575", run ...`. */
const REQUIRES = /Requires (\w+) access(?: to "([^"]*)")?/;

/**
 * Reads which permission a `Deno.errors.NotCapable` error is about, and
 * the flag that grants it.
 *
 * @param error What was thrown.
 * @returns The permission, or `undefined` when `error` is not a
 *   `Deno.errors.NotCapable`.
 *
 * @example The flag for a path with a space
 * ```ts
 * import { missingPermission } from "./permission.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new Deno.errors.NotCapable(
 *   'Requires write access to "/tmp/my queue.sqlite", run again with the --allow-write flag',
 * );
 * assertEquals(missingPermission(error), {
 *   name: "write",
 *   target: "/tmp/my queue.sqlite",
 *   flag: '--allow-write="/tmp/my queue.sqlite"',
 * });
 * assertEquals(missingPermission(new Error("Requires net access")), undefined);
 * ```
 */
export function missingPermission(
  error: unknown,
): MissingPermission | undefined {
  if (!(error instanceof Deno.errors.NotCapable)) return undefined;
  const match = REQUIRES.exec(error.message);
  const name = match?.[1];
  const target = match?.[2];
  const flag = name === undefined
    ? undefined
    : target === undefined
    ? `--allow-${name}`
    : `--allow-${name}=${
      /^[\w.:\[\]\/@+-]+$/.test(target) ? target : `"${target}"`
    }`;
  return { name, target, flag };
}

/**
 * Turns Deno's refusal of a permission into one line that says what was
 * refused and names the flag that grants it (and `-A`, and `-P` for the
 * permission set in `deno.json`), for the library's entry points to throw
 * instead of a bare `NotCapable`.
 *
 * @param error What was thrown.
 * @param doing What was being done, as the error's message starts:
 *   `"Cannot connect to 127.0.0.1:2575"`.
 * @returns A `Deno.errors.NotCapable` (so that code which checks for one
 *   still finds it) with that message and `error` as its cause; or
 *   `undefined` when `error` is not a `Deno.errors.NotCapable`.
 *
 * @example A client without net permission
 * ```ts
 * import { permissionError } from "./permission.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const refused = new Deno.errors.NotCapable(
 *   'Requires net access to "127.0.0.1:2575", run again with the --allow-net flag',
 * );
 * assertEquals(
 *   permissionError(refused, "Cannot connect to 127.0.0.1:2575")?.message,
 *   'Cannot connect to 127.0.0.1:2575: no net permission for "127.0.0.1:2575"; run Deno with --allow-net=127.0.0.1:2575 (or -A for every permission, or -P for the permission set in deno.json)',
 * );
 * assertEquals(permissionError(new Error("boom"), "Cannot connect"), undefined);
 * ```
 */
export function permissionError(
  error: unknown,
  doing: string,
): Deno.errors.NotCapable | undefined {
  const missing = missingPermission(error);
  if (missing === undefined) return undefined;
  const { name, target, flag } = missing;
  const others =
    "(or -A for every permission, or -P for the permission set in deno.json)";
  const what = name === undefined
    ? `Deno refused a permission (${(error as Error).message})`
    : target === undefined
    ? `no ${name} permission`
    : `no ${name} permission for "${target}"`;
  const fix = flag === undefined
    ? `run Deno with the flag that grants it ${others}`
    : `run Deno with ${flag} ${others}`;
  return new Deno.errors.NotCapable(`${doing}: ${what}; ${fix}`, {
    cause: error,
  });
}

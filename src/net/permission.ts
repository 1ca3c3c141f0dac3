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
  const flag = name === undefined ? undefined : allowFlag(name, target);
  return { name, target, flag };
}

/** `--allow-net=127.0.0.1:2575`, quoted for a shell when it must be. */
function allowFlag(name: string, target: string | undefined): string {
  if (target === undefined) return `--allow-${name}`;
  return `--allow-${name}=${
    /^[\w.:\[\]\/@+-]+$/.test(target) ? target : `"${target}"`
  }`;
}

const OTHERS =
  "(or -A for every permission, or -P for the permission set in deno.json)";

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
  const what = name === undefined
    ? `Deno refused a permission (${(error as Error).message})`
    : target === undefined
    ? `no ${name} permission`
    : `no ${name} permission for "${target}"`;
  const fix = flag === undefined
    ? `run Deno with the flag that grants it ${OTHERS}`
    : `run Deno with ${flag} ${OTHERS}`;
  return new Deno.errors.NotCapable(`${doing}: ${what}; ${fix}`, {
    cause: error,
  });
}

/** What `requirePermissions` checks: Deno's descriptors this code uses. */
export type NeededPermission =
  | { name: "net"; host: string }
  | { name: "read"; path: string }
  | { name: "write"; path: string };

/**
 * Checks that Deno grants every permission listed before the code that
 * needs them runs (asking first on a terminal, as Deno would have), for
 * entry points whose own failure would come later or uncaught: a
 * `node:tls` listener, a KV file that needs both read and write.
 *
 * @param needed The permissions, such as
 *   `[{ name: "net", host: "127.0.0.1:2575" }]`.
 * @param doing What needs them, as the error's message starts:
 *   `"Cannot listen on 127.0.0.1:2575"`.
 * @throws {Deno.errors.NotCapable} If one is not granted, in the one-line
 *   form `permissionError` gives, naming every flag missing.
 *
 * @example Nothing thrown when the permission is there
 * ```ts
 * import { requirePermissions } from "./permission.ts";
 *
 * requirePermissions([{ name: "read", path: "." }], 'Cannot read "."');
 * ```
 */
export function requirePermissions(
  needed: readonly NeededPermission[],
  doing: string,
): void {
  const permissions = Deno.permissions;
  if (typeof permissions?.querySync !== "function") return;
  const missing: NeededPermission[] = [];
  for (const descriptor of needed) {
    let state: Deno.PermissionState;
    try {
      state = permissions.querySync(descriptor).state;
      if (state === "prompt") state = permissions.requestSync(descriptor).state;
    } catch {
      // A descriptor Deno cannot read (a port out of range): the call
      // itself reports what is wrong.
      continue;
    }
    if (state !== "granted") missing.push(descriptor);
  }
  if (missing.length === 0) return;
  const target = (descriptor: NeededPermission) =>
    descriptor.name === "net" ? descriptor.host : descriptor.path;
  const targets = [...new Set(missing.map(target))];
  const names = missing.map((descriptor) => descriptor.name).join(" and ");
  const what = targets.length === 1
    ? `no ${names} permission for "${targets[0]}"`
    : `no ${names} permission`;
  const flags = missing.map((descriptor) =>
    allowFlag(descriptor.name, target(descriptor))
  ).join(" ");
  throw new Deno.errors.NotCapable(
    `${doing}: ${what}; run Deno with ${flags} ${OTHERS}`,
  );
}

/**
 * The permissions the library's entry points need, checked before they
 * act: a receiver needs `net` for its address, a KV store or outbox
 * `read` and `write` for its file. A missing one is a
 * `Deno.errors.NotCapable` whose message is one line naming the flags that
 * grant it, thrown from the call that needs it, rather than Deno's error
 * from deep inside (or, for a `node:tls` listener, an uncaught one later).
 *
 * On a terminal, Deno asks as it would have (`Deno.permissions.request`);
 * without one, or with `--no-prompt`, a permission not granted is missing.
 *
 * @module
 */

/** What `requirePermissions` checks: Deno's descriptors this code uses. */
export type NeededPermission =
  | { name: "net"; host: string }
  | { name: "read"; path: string }
  | { name: "write"; path: string };

/**
 * Throws unless Deno grants every permission listed (asking first on a
 * terminal).
 *
 * @param needed The permissions, such as
 *   `[{ name: "net", host: "127.0.0.1:2575" }]`.
 * @param doing What needs them, after "Cannot": `listen on 127.0.0.1:2575`.
 * @throws {Deno.errors.NotCapable} If one is not granted:
 *   `Cannot listen on 127.0.0.1:2575 without net permission: run Deno with --allow-net`.
 */
export function requirePermissions(
  needed: readonly NeededPermission[],
  doing: string,
): void {
  const permissions = Deno.permissions;
  if (typeof permissions?.querySync !== "function") return;
  let missing = false;
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
    if (state !== "granted") {
      missing = true;
      break;
    }
  }
  if (!missing) return;
  const names = [...new Set(needed.map((descriptor) => descriptor.name))];
  throw new Deno.errors.NotCapable(
    `Cannot ${doing} without ${names.join(" and ")} permission: run Deno with ${
      names.map((name) => `--allow-${name}`).join(" ")
    }`,
  );
}

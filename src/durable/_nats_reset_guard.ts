/**
 * A guard against a crash of the NATS node transport under Deno. When a
 * connect fails after the socket is open (a wrong password: the server
 * answers `-ERR 'Authorization Violation'` and closes), the transport
 * removes its socket's listeners and destroys it; Deno's `node:net` then
 * reports the peer's reset as `read ECONNRESET`, an error with no listener,
 * which ends the process after the connect's rejection was already caught
 * (10 of 12 runs of a plain `connect()` with a wrong password, here).
 *
 * {@linkcode guardConnect} installs, once, a listener for the global
 * `error` event that cancels exactly that error (`code` `ECONNRESET`,
 * `syscall` `read`) while a guarded connect runs and for two seconds after
 * one failed; every other error, and that one at any other time, is left
 * alone.
 *
 * @module
 */

/** How long after a failed connect its socket's reset is cancelled, in ms. */
const GRACE_MS = 2_000;

let installed = false;
let connecting = 0;
let lastFailure = -Infinity;

function install(): void {
  if (installed || typeof globalThis.addEventListener !== "function") return;
  installed = true;
  globalThis.addEventListener("error", (event) => {
    if (connecting === 0 && performance.now() - lastFailure > GRACE_MS) {
      return;
    }
    const error = (event as ErrorEvent).error as
      | { code?: unknown; syscall?: unknown }
      | undefined;
    if (error?.code === "ECONNRESET" && error.syscall === "read") {
      event.preventDefault();
    }
  });
}

/**
 * Runs a NATS connect so that a failed one cannot end the process through
 * its socket's late `read ECONNRESET`; see the module documentation.
 */
export async function guardConnect<T>(connect: () => Promise<T>): Promise<T> {
  install();
  connecting++;
  try {
    return await connect();
  } catch (error) {
    lastFailure = performance.now();
    throw error;
  } finally {
    connecting--;
  }
}

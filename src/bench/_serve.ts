/**
 * The accept loop the bench's bare responders share: one task per
 * connection, and a close that stops listening, closes every connection
 * and waits for their tasks.
 *
 * @module
 */

/**
 * A running bare responder: {@linkcode startRawResponder} or
 * {@linkcode startAckResponder}.
 *
 * @example Count its connections
 * ```ts
 * import { type RawResponder, startRawResponder } from "@x/mllp/unstable-bench";
 * import { Client } from "@x/mllp";
 * import { assertEquals } from "@std/assert";
 *
 * const raw: RawResponder = startRawResponder();
 * const client = await Client.connect(raw.hostname, raw.port);
 * await client.send("PING");
 * assertEquals(raw.connections, 1);
 * await client.close();
 * await raw.close();
 * ```
 */
export interface RawResponder extends AsyncDisposable {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on. */
  readonly port: number;
  /** The number of open connections. */
  readonly connections: number;
  /**
   * Stops listening and closes every connection.
   *
   * @returns A promise that resolves when every connection is closed.
   */
  close(): Promise<void>;
}

/** Listens on TCP, or TLS with a certificate and key (PEM text). */
export function listenBare(
  hostname: string,
  port: number,
  tls: { cert: string; key: string } | undefined,
): Deno.Listener {
  return tls
    ? Deno.listenTls({ hostname, port, ...tls })
    : Deno.listen({ hostname, port });
}

/** Serves each connection of `listener` with `serve` until closed. */
export function serveBare(
  listener: Deno.Listener,
  hostname: string,
  serve: (conn: Deno.Conn) => Promise<void>,
): RawResponder {
  const conns = new Set<Deno.Conn>();
  const serving = new Set<Promise<void>>();
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        const done = serve(conn).catch(() => {
          // The peer reset the connection, or it was closed on stop.
        }).finally(() => {
          closeQuietly(conn);
          conns.delete(conn);
          serving.delete(done);
        });
        serving.add(done);
      }
    } catch {
      // The listener was closed.
    }
  })();
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      closeQuietly(listener);
      await accepting;
      for (const conn of conns) closeQuietly(conn);
      await Promise.all(serving);
    })();
  return {
    hostname,
    port: (listener.addr as Deno.NetAddr).port,
    get connections() {
      return conns.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Turns Nagle's algorithm off on a TCP connection (not on TLS ones). */
export function noDelay(conn: Deno.Conn) {
  try {
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
  } catch {
    // The peer may be gone already.
  }
}

/** Writes all of `data`. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array) {
  for (let written = await conn.write(data); written < data.length;) {
    written += await conn.write(data.subarray(written));
  }
}

/** Closes a connection or listener, whether or not it is open. */
export function closeQuietly(resource: { close(): void }) {
  try {
    resource.close();
  } catch {
    // Closed already.
  }
}

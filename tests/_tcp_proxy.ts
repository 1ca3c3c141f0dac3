/**
 * A layer-4 load balancer for tests: one TCP address on 127.0.0.1 that
 * hands each accepted connection to the next backend in turn (round
 * robin) and copies bytes both ways. A backend that refuses the
 * connection is skipped for the next one, as a balancer's health check
 * would; the client's connection is closed when its backend's is, and the
 * other way round. Disposing it closes the listener and every connection.
 *
 * @module
 */

/** A backend's address. */
export interface Backend {
  hostname: string;
  port: number;
}

/** Counts kept by a {@linkcode TcpProxy}. */
export interface ProxyCounts {
  /** Client connections accepted. */
  accepted: number;
  /** Connections handed to each backend, by index. */
  perBackend: number[];
  /** Backend connections refused (the next backend was tried). */
  refused: number;
  /** Client connections closed because no backend took them. */
  dropped: number;
}

/** A running proxy; see the module documentation. */
export class TcpProxy implements AsyncDisposable {
  readonly port: number;
  readonly counts: ProxyCounts;
  #listener: Deno.TcpListener;
  #backends: Backend[];
  #next = 0;
  #open = new Set<Deno.TcpConn>();
  #accepting: Promise<void>;
  #pipes = new Set<Promise<void>>();

  constructor(backends: Backend[]) {
    this.#backends = backends;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = this.#listener.addr.port;
    this.counts = {
      accepted: 0,
      perBackend: backends.map(() => 0),
      refused: 0,
      dropped: 0,
    };
    this.#accepting = this.#accept();
  }

  async #accept(): Promise<void> {
    for (;;) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // Closed.
      }
      this.counts.accepted++;
      const pipe = this.#serve(client);
      this.#pipes.add(pipe);
      pipe.finally(() => this.#pipes.delete(pipe));
    }
  }

  /** Connects to the next backend that accepts, or `undefined`. */
  async #connect(): Promise<Deno.TcpConn | undefined> {
    for (let tried = 0; tried < this.#backends.length; tried++) {
      const index = this.#next;
      this.#next = (this.#next + 1) % this.#backends.length;
      try {
        const conn = await Deno.connect(this.#backends[index]);
        this.counts.perBackend[index]++;
        return conn;
      } catch {
        this.counts.refused++;
      }
    }
    return undefined;
  }

  async #serve(client: Deno.TcpConn): Promise<void> {
    this.#open.add(client);
    const backend = await this.#connect();
    if (!backend) {
      this.counts.dropped++;
      close(client);
      this.#open.delete(client);
      return;
    }
    this.#open.add(backend);
    const done = () => {
      close(client);
      close(backend);
    };
    await Promise.all([
      copy(client, backend).finally(done),
      copy(backend, client).finally(done),
    ]);
    this.#open.delete(client);
    this.#open.delete(backend);
  }

  /** Closes the listener and every connection. */
  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // Closed already.
    }
    await this.#accepting;
    for (const conn of this.#open) close(conn);
    await Promise.all([...this.#pipes]);
  }

  /** Closes the proxy; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function close(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}

/** Copies bytes until either side ends or fails. */
async function copy(from: Deno.TcpConn, to: Deno.TcpConn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) return;
      let written = 0;
      while (written < n) {
        written += await to.write(buffer.subarray(written, n));
      }
    }
  } catch {
    // A side was closed or reset: the pipe ends.
  }
}

/**
 * Starts a round-robin TCP proxy on a free port of 127.0.0.1.
 *
 * @param backends Where to send connections, in turn.
 * @returns The running proxy; dispose of it to stop it.
 */
export function startTcpProxy(backends: Backend[]): TcpProxy {
  return new TcpProxy(backends);
}

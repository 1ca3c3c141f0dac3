/**
 * Transports. Receivers listen on plain TCP with `Deno.listen`, and on TLS
 * with `node:tls`, which can request and verify client certificates
 * (`Deno.listenTls` cannot), bounds the handshake, and really closes a
 * socket whose handshake has not finished (a `Deno.listenTls` connection
 * closed before its handshake keeps its socket open while the client stays
 * silent). Clients connect with `Deno.connect` / `Deno.connectTls`, and
 * `node:tls` where they must verify a name other than the host's while
 * presenting a certificate. Every transport hands the framer the same
 * `{ readable, writable }` pair, so nothing above knows which it is.
 *
 * @module
 */

import type * as net from "node:net";
import { Duplex } from "node:stream";
import * as nodeTls from "node:tls";
import type { Address } from "./address.ts";

/** The names a peer's certificate carries. */
export interface PeerCertificate {
  /** The subject CN, when there is one. */
  commonName?: string;
  /** The SAN DNS names. */
  dnsNames: string[];
}

/**
 * A connection's incoming bytes, one chunk per call: what the framer's
 * source stream pulls from.
 */
export interface ChunkReader {
  /**
   * Reads the next chunk; `null` once the peer has ended the stream.
   *
   * The chunk may be a view of a buffer that the next call reads into
   * again: the caller must be done with it (and have copied what it keeps)
   * before it calls again. The decoder always is, since it copies every
   * payload out of its input before it asks for more.
   */
  next(): Promise<Uint8Array | null>;
  /** Stops reading; the connection is closed. */
  cancel(reason?: unknown): Promise<void>;
}

/** The size a connection's read buffer starts at, and shrinks back to. */
export const MIN_READ_BUFFER_BYTES = 4 * 1024;
/** The size a connection's read buffer grows to at most. */
export const MAX_READ_BUFFER_BYTES = 64 * 1024;

/** One accepted or opened connection, whatever the transport. */
export interface TransportConn {
  /** The incoming bytes, as a stream (for callers other than the framer). */
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  /**
   * Opens the reader of the incoming bytes. Call it once, and do not use
   * {@linkcode TransportConn.readable} as well.
   */
  reader(): ChunkReader;
  /**
   * Writes all of `data`; resolves once it is handed to the socket. Calls
   * must not overlap (await each), and do not use
   * {@linkcode TransportConn.writable} as well.
   */
  write(data: Uint8Array): Promise<void>;
  readonly peer: Address;
  readonly local: Address;
  /** Whether the connection is encrypted. */
  readonly secure: boolean;
  /** The peer's certificate, after a handshake that asked for one. */
  readonly certificate?: PeerCertificate;
  /** Closes the connection; safe to call more than once. */
  close(): void;
}

/** A listening socket that yields connections. */
export interface TransportListener extends AsyncIterable<TransportConn> {
  readonly addr: Address;
  close(): Promise<void>;
}

/** Server-side TLS settings, already loaded as PEM text. */
export interface ServerTlsMaterial {
  cert: string;
  key: string;
  ca: string[];
  verifyPeer: boolean;
  handshakeTimeout: number;
}

/** What a listener asks of its receiver about each new connection. */
export interface ListenHooks {
  /**
   * Decides, before anything is read (and before a TLS handshake),
   * whether a peer may connect; a refused connection is closed at once.
   */
  screen?: (peer: Address) => boolean;
  /** Called when a TLS handshake fails. */
  onHandshakeError?: (peer: Address, error: unknown) => void;
}

class DenoConn implements TransportConn {
  readonly peer: Address;
  readonly local: Address;
  readonly secure: boolean;
  #conn: Deno.TcpConn | Deno.TlsConn;

  constructor(conn: Deno.TcpConn | Deno.TlsConn, secure: boolean) {
    this.#conn = conn;
    this.secure = secure;
    this.peer = address(conn.remoteAddr);
    this.local = address(conn.localAddr);
    try {
      if ("setNoDelay" in conn) conn.setNoDelay(true);
    } catch {
      // The peer may be gone already.
    }
  }

  // Deno makes these streams when first asked for: a connection served
  // through reader() never has the readable one.
  get readable(): ReadableStream<Uint8Array> {
    return this.#conn.readable;
  }

  get writable(): WritableStream<Uint8Array> {
    return this.#conn.writable;
  }

  /**
   * Reads with `conn.read` into one buffer per connection, reused for
   * every read. (`conn.readable` would go through a byte stream's BYOB
   * machinery for each read, and its default reader allocates a fresh
   * 64 KiB buffer per read, which a short message then keeps alive until
   * the next garbage collection.)
   *
   * The buffer adapts to the traffic: it starts at 4 KiB, so that an idle
   * connection's pending read holds no more than that; it doubles after
   * each read that fills it, up to 64 KiB, so that bulk data is read in
   * few large reads; and it halves after each read that fills less than a
   * quarter of it.
   */
  reader(): ChunkReader {
    const conn = this.#conn;
    let buffer = new Uint8Array(MIN_READ_BUFFER_BYTES);
    const took = (length: number | null): Uint8Array | null => {
      if (length === null) return null;
      const chunk = buffer.subarray(0, length);
      const size = buffer.length;
      if (length === size && size < MAX_READ_BUFFER_BYTES) {
        buffer = new Uint8Array(size * 2);
      } else if (length < size / 4 && size > MIN_READ_BUFFER_BYTES) {
        buffer = new Uint8Array(size / 2);
      }
      return chunk;
    };
    return {
      next: () => conn.read(buffer).then(took),
      cancel: () => {
        this.close();
        return Promise.resolve();
      },
    };
  }

  async write(data: Uint8Array): Promise<void> {
    // Most writes take all of it at once: no view for those.
    let written = await this.#conn.write(data);
    while (written < data.length) {
      written += await this.#conn.write(data.subarray(written));
    }
  }

  close() {
    try {
      this.#conn.close();
    } catch {
      // Closed already.
    }
  }
}

class NodeConn implements TransportConn {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly peer: Address;
  readonly local: Address;
  readonly secure = true;
  readonly certificate?: PeerCertificate;
  #socket: nodeTls.TLSSocket;

  /**
   * @param socket A socket whose handshake has succeeded.
   * @param peer The peer's address as the caller named it (client side).
   */
  constructor(socket: nodeTls.TLSSocket, peer?: Address) {
    this.#socket = socket;
    socket.setNoDelay(true);
    const web = Duplex.toWeb(socket) as unknown as {
      readable: ReadableStream<Uint8Array>;
      writable: WritableStream<Uint8Array>;
    };
    this.readable = web.readable;
    this.writable = web.writable;
    this.peer = peer ?? {
      hostname: socket.remoteAddress ?? "unknown",
      port: socket.remotePort ?? 0,
    };
    this.local = {
      hostname: socket.localAddress ?? "unknown",
      port: socket.localPort ?? 0,
    };
    this.certificate = peerCertificate(socket);
  }

  /** Reads the socket's stream as it comes: a fresh chunk each time. */
  reader(): ChunkReader {
    const reader = this.readable.getReader();
    return {
      next: async () => {
        const result = await reader.read();
        return result.done ? null : result.value;
      },
      cancel: (reason) => reader.cancel(reason),
    };
  }

  write(data: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#socket.write(data, (error) => error ? reject(error) : resolve());
    });
  }

  close() {
    this.#socket.destroy();
  }
}

function address(addr: Deno.Addr): Address {
  const net = addr as Deno.NetAddr;
  return { hostname: net.hostname, port: net.port };
}

function peerCertificate(
  socket: nodeTls.TLSSocket,
): PeerCertificate | undefined {
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return undefined;
  const cn = cert.subject?.CN;
  const commonName = Array.isArray(cn) ? cn[0] : cn;
  const dnsNames = (cert.subjectaltname ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.startsWith("DNS:"))
    .map((s) => s.slice(4));
  return { commonName, dnsNames };
}

/** A `Deno.listen` TCP listener as a {@linkcode TransportListener}. */
class TcpListener implements TransportListener {
  readonly addr: Address;
  #listener: Deno.TcpListener;
  #screen?: (peer: Address) => boolean;

  constructor(listener: Deno.TcpListener, hooks: ListenHooks) {
    this.#listener = listener;
    this.#screen = hooks.screen;
    this.addr = address(listener.addr);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TransportConn> {
    for await (const tcp of this.#listener) {
      const conn = new DenoConn(tcp, false);
      if (this.#screen && !this.#screen(conn.peer)) {
        conn.close();
        continue;
      }
      yield conn;
    }
  }

  close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // Closed already.
    }
    return Promise.resolve();
  }
}

/**
 * A `node:tls` server, yielding each connection once its handshake has
 * succeeded. Sockets still in their handshake are tracked so that closing
 * the listener closes them too.
 */
class TlsListener implements TransportListener {
  readonly addr: Address;
  #server: nodeTls.Server;
  #queue: TransportConn[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Raw sockets by `address:port`, until their handshake ends. */
  #handshaking = new Map<string, net.Socket>();
  /** Peers screened out, whose aborted handshake is no news. */
  #screenedOut = new Set<string>();

  constructor(server: nodeTls.Server, hooks: ListenHooks) {
    this.#server = server;
    const addr = server.address() as { address: string; port: number };
    this.addr = { hostname: addr.address, port: addr.port };
    server.on("connection", (raw: net.Socket) => {
      const peer = {
        hostname: raw.remoteAddress ?? "unknown",
        port: raw.remotePort ?? 0,
      };
      const key = `${peer.hostname}:${peer.port}`;
      if (this.#closed || (hooks.screen && !hooks.screen(peer))) {
        this.#screenedOut.add(key);
        if (this.#screenedOut.size > 1024) {
          // Bounded: forget the oldest, should its error never come.
          const [oldest] = this.#screenedOut;
          this.#screenedOut.delete(oldest);
        }
        raw.destroy();
        return;
      }
      this.#handshaking.set(key, raw);
      raw.once("close", () => {
        if (this.#handshaking.get(key) === raw) this.#handshaking.delete(key);
      });
      raw.on("error", () => {
        // Reported as a handshake or stream error.
      });
    });
    server.on("secureConnection", (socket: nodeTls.TLSSocket) => {
      this.#handshaking.delete(`${socket.remoteAddress}:${socket.remotePort}`);
      if (this.#closed) {
        socket.destroy();
        return;
      }
      socket.on("error", () => {
        // Reported through the stream that reads the socket.
      });
      this.#queue.push(new NodeConn(socket));
      this.#wake?.();
    });
    server.on("tlsClientError", (error: Error, socket: nodeTls.TLSSocket) => {
      const raw = (socket as unknown as {
        _parent?: { remoteAddress?: string; remotePort?: number };
      })._parent;
      const peer = {
        hostname: socket.remoteAddress ?? raw?.remoteAddress ?? "unknown",
        port: socket.remotePort ?? raw?.remotePort ?? 0,
      };
      socket.destroy();
      const key = `${peer.hostname}:${peer.port}`;
      this.#handshaking.get(key)?.destroy();
      this.#handshaking.delete(key);
      if (this.#screenedOut.delete(key)) return;
      if (!this.#closed) hooks.onHandshakeError?.(peer, error);
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TransportConn> {
    while (true) {
      const next = this.#queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.#closed) return;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
  }

  close(): Promise<void> {
    return this.#closing ??= new Promise<void>((resolve) => {
      this.#closed = true;
      for (const conn of this.#queue.splice(0)) conn.close();
      for (const raw of this.#handshaking.values()) raw.destroy();
      this.#handshaking.clear();
      this.#wake?.();
      this.#server.close(() => resolve());
    });
  }
}

/** Listens on plain TCP. */
export function listenTcp(
  hostname: string,
  port: number,
  hooks: ListenHooks = {},
): TransportListener {
  return new TcpListener(
    Deno.listen({ hostname, port, transport: "tcp" }),
    hooks,
  );
}

/**
 * Listens on TLS through `node:tls`: TLS 1.2 at least, a bounded
 * handshake, and with `verifyPeer` a client certificate signed by `ca`
 * required (`requestCert` and `rejectUnauthorized`).
 */
export async function listenTls(
  hostname: string,
  port: number,
  tls: ServerTlsMaterial,
  hooks: ListenHooks = {},
): Promise<TransportListener> {
  const server = nodeTls.createServer({
    cert: tls.cert,
    key: tls.key,
    ca: tls.ca.length > 0 ? tls.ca : undefined,
    requestCert: tls.verifyPeer,
    rejectUnauthorized: tls.verifyPeer,
    minVersion: "TLSv1.2",
    handshakeTimeout: tls.handshakeTimeout,
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return new TlsListener(server, hooks);
}

/** Client-side TLS settings, already loaded as PEM text. */
export interface ClientTlsMaterial {
  caCerts: string[];
  cert?: string;
  key?: string;
  serverName?: string;
}

/**
 * Opens a connection: `Deno.connect`, `Deno.connectTls`, `Deno.startTls`
 * (to verify a server name other than the host connected to), or
 * `node:tls` (a server name other than the host, with a client
 * certificate, which `Deno.startTls` cannot send). TLS connections have
 * completed their handshake when this resolves.
 */
export async function connect(
  hostname: string,
  port: number,
  tls: ClientTlsMaterial | undefined,
  signal: AbortSignal,
): Promise<TransportConn> {
  if (!tls) {
    return new DenoConn(await Deno.connect({ hostname, port, signal }), false);
  }
  const caCerts = tls.caCerts.length > 0 ? tls.caCerts : undefined;
  const serverName = tls.serverName ?? hostname;
  if (serverName !== hostname && tls.cert) {
    return await connectNodeTls(hostname, port, tls, serverName, signal);
  }
  let conn: Deno.TlsConn;
  const closeLate = (late: Deno.TlsConn) => {
    try {
      late.close();
    } catch {
      // Closed already.
    }
  };
  if (serverName !== hostname) {
    const tcp = await Deno.connect({ hostname, port, signal });
    conn = await abortable(
      Deno.startTls(tcp, { hostname: serverName, caCerts }),
      signal,
      closeLate,
    );
  } else {
    // Deno.connectTls takes no signal: give up on it when the signal
    // fires, and close the connection if it opens after all.
    conn = await abortable(
      Deno.connectTls({
        hostname,
        port,
        caCerts,
        ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
      }),
      signal,
      closeLate,
    );
  }
  const onAbort = () => closeLate(conn);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    // Closing the connection interrupts the handshake. (Deno keeps the
    // socket itself open until the server ends it.)
    await conn.handshake();
  } catch (error) {
    onAbort();
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  return new DenoConn(conn, true);
}

function connectNodeTls(
  hostname: string,
  port: number,
  tls: ClientTlsMaterial,
  serverName: string,
  signal: AbortSignal,
): Promise<TransportConn> {
  return new Promise((resolve, reject) => {
    const socket = nodeTls.connect({
      host: hostname,
      port,
      servername: serverName,
      ca: tls.caCerts.length > 0 ? tls.caCerts : undefined,
      cert: tls.cert,
      key: tls.key,
      minVersion: "TLSv1.2",
      rejectUnauthorized: true,
    });
    const onAbort = () => socket.destroy(new Error("Connect timed out"));
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("secureConnect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.off("error", reject);
      socket.on("error", () => {
        // Reported through the stream that reads the socket.
      });
      resolve(new NodeConn(socket, { hostname, port }));
    });
    socket.once("error", (error) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(error);
    });
  });
}

/**
 * Settles with `promise`, or rejects when `signal` fires first; a value
 * that arrives after that is handed to `late` (to be closed).
 */
function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  late: (value: T) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.then(late, () => {});
      reject(signal.reason ?? new Error("Aborted"));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then((value) => {
      signal.removeEventListener("abort", onAbort);
      if (signal.aborted) return;
      resolve(value);
    }, (error) => {
      signal.removeEventListener("abort", onAbort);
      reject(error);
    });
  });
}

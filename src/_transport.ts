/**
 * Transports: plain TCP (`Deno.listen` / `Deno.connect`), TLS
 * (`Deno.listenTls` / `Deno.connectTls`), and mutual TLS through
 * `node:tls` where client certificates must be requested and verified,
 * which `Deno.listenTls` cannot do. Each hands the framer the same
 * `{ readable, writable }` pair, so nothing above knows which it is.
 *
 * @module
 */

import { Duplex } from "node:stream";
import * as nodeTls from "node:tls";
import type { Address } from "./dispatcher.ts";

/** The names a peer's certificate carries. */
export interface PeerCertificate {
  /** The subject CN, when there is one. */
  commonName?: string;
  /** The SAN DNS names. */
  dnsNames: string[];
}

/** One accepted or opened connection, whatever the transport. */
export interface TransportConn {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly peer: Address;
  readonly local: Address;
  /** Whether the connection is encrypted. */
  readonly secure: boolean;
  /** The peer's certificate, after a handshake that asked for one. */
  readonly certificate?: PeerCertificate;
  /** Completes the TLS handshake (nothing to do for TCP). */
  handshake(): Promise<void>;
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
}

/** Called when a handshake fails before a connection is handed out. */
export type HandshakeErrorHandler = (peer: Address, error: unknown) => void;

class DenoConn implements TransportConn {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly peer: Address;
  readonly local: Address;
  readonly secure: boolean;
  #conn: Deno.TcpConn | Deno.TlsConn;

  constructor(conn: Deno.TcpConn | Deno.TlsConn, secure: boolean) {
    this.#conn = conn;
    this.secure = secure;
    this.readable = conn.readable;
    this.writable = conn.writable;
    this.peer = address(conn.remoteAddr);
    this.local = address(conn.localAddr);
    try {
      if ("setNoDelay" in conn) conn.setNoDelay(true);
    } catch {
      // The peer may be gone already.
    }
  }

  async handshake(): Promise<void> {
    if (this.secure) await (this.#conn as Deno.TlsConn).handshake();
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

  handshake(): Promise<void> {
    return Promise.resolve();
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

/** Wraps a `Deno.Listener` (TCP or TLS) as a {@linkcode TransportListener}. */
class DenoListener implements TransportListener {
  readonly addr: Address;
  #listener: Deno.TcpListener | Deno.TlsListener;
  #secure: boolean;

  constructor(listener: Deno.TcpListener | Deno.TlsListener, secure: boolean) {
    this.#listener = listener;
    this.#secure = secure;
    this.addr = address(listener.addr);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TransportConn> {
    for await (const conn of this.#listener) {
      yield new DenoConn(conn, this.#secure);
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
 * A `node:tls` server that requests and verifies client certificates,
 * yielding each connection once its handshake has succeeded.
 */
class NodeTlsListener implements TransportListener {
  readonly addr: Address;
  #server: nodeTls.Server;
  #queue: TransportConn[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(server: nodeTls.Server, onHandshakeError: HandshakeErrorHandler) {
    this.#server = server;
    const addr = server.address() as { address: string; port: number };
    this.addr = { hostname: addr.address, port: addr.port };
    server.on("secureConnection", (socket: nodeTls.TLSSocket) => {
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
      onHandshakeError({
        hostname: socket.remoteAddress ?? raw?.remoteAddress ?? "unknown",
        port: socket.remotePort ?? raw?.remotePort ?? 0,
      }, error);
      socket.destroy();
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
      this.#wake?.();
      this.#server.close(() => resolve());
    });
  }
}

/** Listens on plain TCP. */
export function listenTcp(hostname: string, port: number): TransportListener {
  return new DenoListener(
    Deno.listen({ hostname, port, transport: "tcp" }),
    false,
  );
}

/**
 * Listens on TLS: `Deno.listenTls` when clients need not present a
 * certificate, `node:tls` with `requestCert` and `rejectUnauthorized` when
 * they must.
 */
export async function listenTls(
  hostname: string,
  port: number,
  tls: ServerTlsMaterial,
  onHandshakeError: HandshakeErrorHandler,
): Promise<TransportListener> {
  if (!tls.verifyPeer) {
    return new DenoListener(
      Deno.listenTls({ hostname, port, cert: tls.cert, key: tls.key }),
      true,
    );
  }
  const server = nodeTls.createServer({
    cert: tls.cert,
    key: tls.key,
    ca: tls.ca,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.2",
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return new NodeTlsListener(server, onHandshakeError);
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
  if (serverName !== hostname) {
    const tcp = await Deno.connect({ hostname, port, signal });
    conn = await Deno.startTls(tcp, { hostname: serverName, caCerts });
  } else if (tls.cert && tls.key) {
    conn = await Deno.connectTls({
      hostname,
      port,
      caCerts,
      cert: tls.cert,
      key: tls.key,
    });
  } else {
    conn = await Deno.connectTls({ hostname, port, caCerts });
  }
  const onAbort = () => {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
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

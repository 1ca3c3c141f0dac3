/**
 * The client's connection life: opening a link (TCP or TLS, within the
 * connect timeout, errors named), the loop that keeps one open and
 * reconnects after a drop or a failed attempt with backoff waits (the
 * delays come from `reconnectDelay` in `../net/backoff.ts`), and the sends
 * waiting for a link.
 *
 * Its log lines say what happened, never what is about to: an attempt that
 * failed, a connection made ("Reconnected ..." after a drop), a connection
 * closed. A backoff wait is not logged (the `reconnecting` event tells of
 * it), so a client closed during the wait never claims to reconnect. A
 * TLS connection counts as made once the receiver has had time to refuse
 * the client's certificate (see `TLS_SETTLE_MS`).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  isTlsError,
  Link,
  type LinkClosed,
  tlsHandshakeError,
} from "./link.ts";
import { ReplyRouter } from "./reply_router.ts";
import {
  ClientError,
  ConnectionClosedError,
  ConnectionRefusedError,
  ConnectTimeoutError,
  TlsHandshakeError,
} from "./errors.ts";
import type { ClientState, Emit } from "./events.ts";
import type { ClientSettings, ClientTlsOptions } from "./options.ts";
import { abortError } from "./queue.ts";
import { loadPem, loadPems } from "../net/tls.ts";
import { type ClientTlsMaterial, connect } from "../net/transport.ts";
import { reconnectDelay } from "../net/backoff.ts";
import { missingPermission, permissionError } from "../net/permission.ts";
import { recordReconnect } from "../observe/telemetry.ts";

const logger = getLogger(["mllp", "client"]);

/**
 * How long, at least, a TLS connection is watched after its handshake
 * before it counts as made, in milliseconds (or twice the time the
 * handshake took, if longer; at most what is left of the connect
 * timeout). With TLS 1.3 a receiver judges the client's certificate after
 * the client has finished its side of the handshake, and refuses it with
 * an alert or a close: Deno's `node:tls` receivers do so about 50 ms
 * later on loopback. A refusal in this time fails the attempt (a
 * `TlsHandshakeError`) instead of a connection that was "made".
 */
export const TLS_SETTLE_MS = 250;

/** What a {@linkcode Connector} tells the client it works for. */
export interface ConnectorHooks {
  /** Emits one of the client's events. */
  emit: Emit;
  /** A connection is up: queued sends stop counting their wait. */
  connected(): void;
  /** The connection is gone: queued sends start counting their wait. */
  disconnected(): void;
}

interface LinkWaiter {
  resolve(link: Link): void;
  reject(error: Error): void;
  /** Reject on the first failed attempt, whatever `whenDisconnected` says. */
  failFast: boolean;
}

/**
 * Keeps one client's connection: connects at once when started, and after
 * a drop or a failed attempt reconnects with backoff (see the module doc).
 */
export class Connector {
  /** The receiver's address, as `host:port`. */
  readonly address: string;
  #hostname: string;
  #port: number;
  #settings: ClientSettings;
  #hooks: ConnectorHooks;
  #tlsMaterial: Promise<ClientTlsMaterial> | undefined;
  #routers = new WeakMap<Link, ReplyRouter>();
  #state: ClientState = "connecting";
  #link: Link | undefined;
  #links = new Set<Link>();
  #lastError: ClientError | undefined;
  #waiters = new Set<LinkWaiter>();
  #closing = false;
  #running: Promise<void> = Promise.resolve();
  /** Wakes the connection loop from a backoff wait or an idle wait. */
  #wake: (() => void) | undefined;
  #wakeRequested = false;
  #reconnectNow = false;
  /**
   * Backoff waits in a row since the last good connection (or since a
   * reconnect at once): the next wait is number `#waits + 1`.
   */
  #waits = 0;
  /**
   * The next attempt was announced already (by a backoff wait), or is the
   * client's first: no `reconnecting` at once for it.
   */
  #announced = true;
  /** A connection is wanted now (always true at creation). */
  #demand = true;
  #connectAbort: AbortController | undefined;
  #firstAttempt: Promise<void>;
  /** Set by `Client.connect`: stop after a failed first attempt. */
  #giveUpOnFirstFailure = false;
  /** Whether a connection was ever made: the next is a reconnection. */
  #everConnected = false;
  /**
   * Whether the last attempt failed in a way the next attempt will not
   * change (the receiver refused the client's certificate right after the
   * handshake; no net permission): sends waiting fail at once.
   */
  #finalFailure = false;
  #settleFirst!: (error?: ClientError) => void;

  constructor(
    hostname: string,
    port: number,
    address: string,
    settings: ClientSettings,
    hooks: ConnectorHooks,
  ) {
    this.#hostname = hostname;
    this.#port = port;
    this.address = address;
    this.#settings = settings;
    this.#hooks = hooks;
    this.#firstAttempt = new Promise((resolve, reject) => {
      this.#settleFirst = (error) => error ? reject(error) : resolve();
    });
    this.#firstAttempt.catch(() => {});
  }

  /** Starts the connection loop. */
  start() {
    this.#running = this.#run();
  }

  /**
   * Gives up after a failed first attempt (`Client.connect`: the caller
   * hears of it; no backoff behind it).
   *
   * @returns A promise that resolves once the first connection is up, and
   *   rejects with the error of the first attempt if it fails.
   */
  firstConnection(): Promise<void> {
    this.#giveUpOnFirstFailure = true;
    return this.#firstAttempt;
  }

  /** The state of the connection. */
  get state(): ClientState {
    return this.#state;
  }

  /** Whether there is an open connection. */
  get isConnected(): boolean {
    return this.#link !== undefined && !this.#link.isClosed;
  }

  /** The error of the last failed connection attempt, if the last failed. */
  get lastError(): ClientError | undefined {
    return this.#lastError;
  }

  /** Whether {@linkcode Connector.close} was called. */
  get closing(): boolean {
    return this.#closing;
  }

  /** The reply router of a link this connector opened. */
  routerOf(link: Link): ReplyRouter {
    return this.#routers.get(link)!;
  }

  async #run(): Promise<void> {
    let attempt = 1;
    while (!this.#closing) {
      if (this.#settings.reconnect === false && !this.#demand) {
        // Lazy mode: connect only when a send needs it.
        this.#state = "waiting";
        await this.#sleep(Infinity);
        continue;
      }
      this.#demand = false;
      this.#state = "connecting";
      // Every attempt after the first is a reconnection, counted once:
      // when its backoff wait began, or now if there was none.
      if (!this.#announced) this.#announce(attempt, 0);
      this.#announced = false;
      let link: Link;
      this.#finalFailure = false;
      try {
        link = await this.#open();
      } catch (error) {
        const named = this.#name(error);
        this.#lastError = named;
        this.#settleFirst(named);
        if (this.#closing) break;
        const prefix = `Cannot connect to ${this.address}: `;
        logger.warn(
          "Cannot connect to {address} (attempt {attempt}): {message}",
          {
            address: this.address,
            attempt,
            message: named.message.startsWith(prefix)
              ? named.message.slice(prefix.length)
              : named.message,
          },
        );
        this.#hooks.emit("connectfailed", {
          address: this.address,
          attempt,
          error: named,
        });
        this.#finalFailure ||= missingPermission(named.cause) !== undefined;
        // Waiting for the next attempt would not change a final failure.
        this.#failWaiters(named, this.#finalFailure);
        if (this.#giveUpOnFirstFailure) break;
        attempt = await this.#backoff(attempt + 1);
        continue;
      }
      if (this.#closing) {
        await link.shutdown(undefined, true);
        break;
      }
      this.#lastError = undefined;
      // A reconnect() or a wake-up asked for during the attempt is served
      // by this connection; left set, it would skip a later backoff wait.
      this.#reconnectNow = false;
      this.#wakeRequested = false;
      this.#link = link;
      this.#hooks.connected();
      this.#links.add(link);
      void link.done.finally(() => this.#links.delete(link));
      this.#state = "connected";
      this.#settleFirst();
      this.#giveUpOnFirstFailure = false;
      const tls = link.conn.secure ? " with TLS" : "";
      if (this.#everConnected) {
        logger.info("Reconnected to {address}{tls} (attempt {attempt})", {
          address: this.address,
          tls,
          attempt,
        });
      } else if (attempt > 1) {
        logger.info("Connected to {address}{tls} (attempt {attempt})", {
          address: this.address,
          tls,
          attempt,
        });
      } else {
        logger.info("Connected to {address}{tls}", {
          address: this.address,
          tls,
        });
      }
      this.#everConnected = true;
      this.#hooks.emit("connected", {
        address: this.address,
        secure: link.conn.secure,
        attempt,
      });
      for (const waiter of this.#waiters) waiter.resolve(link);
      this.#waiters.clear();
      const closed = await link.closed;
      this.#link = undefined;
      this.#hooks.disconnected();
      this.#onClosed(closed);
      if (this.#closing) break;
      const refused = closed.error instanceof TlsHandshakeError;
      if (refused) {
        // The receiver refused this client's certificate: waiting for the
        // next attempt would not change that, so sends fail now.
        this.#lastError = closed.error as TlsHandshakeError;
        this.#finalFailure = true;
        this.#failWaiters(this.#lastError, true);
      } else if (!closed.byClient) {
        this.#lastError = new ConnectionClosedError(
          `Connection to ${this.address} was closed by the receiver`,
          { cause: closed.error, address: this.address },
        );
      }
      if (this.#reconnectNow || (closed.byClient && !refused)) {
        // This side closed it (a timeout, a bad reply, reconnect()): the
        // receiver is likely up, so reconnect at once.
        this.#reconnectNow = false;
        this.#waits = 0;
        attempt = 1;
        continue;
      }
      if (refused) {
        // A refused handshake is a failed attempt: the waits keep growing.
        attempt = await this.#backoff(attempt + 1);
      } else {
        // A good connection that dropped: the waits start over.
        this.#waits = 0;
        attempt = await this.#backoff(1);
      }
    }
    this.#state = "closed";
  }

  /**
   * Waits before attempt `next` (the next wait in a row, see
   * `reconnectDelay`); returns the attempt to make.
   */
  async #backoff(next: number): Promise<number> {
    if (this.#closing) return next;
    const policy = this.#settings.reconnect;
    if (policy === false) return next;
    if (this.#reconnectNow) {
      this.#reconnectNow = false;
      this.#waits = 0;
      return 1;
    }
    const delayMs = reconnectDelay(policy, ++this.#waits);
    this.#state = "waiting";
    this.#announce(next, delayMs);
    this.#announced = true;
    const woken = await this.#sleep(delayMs);
    if (woken && this.#reconnectNow) {
      // reconnect(): try at once, and the backoff starts over.
      this.#reconnectNow = false;
      this.#waits = 0;
      return 1;
    }
    return next;
  }

  /**
   * Counts a reconnection attempt and tells the world: `reconnecting`,
   * with the wait before it (0: at once). Not logged: the client may be
   * closed before the attempt is made; the attempt's outcome is logged.
   */
  #announce(attempt: number, delayMs: number) {
    recordReconnect();
    this.#hooks.emit("reconnecting", {
      address: this.address,
      attempt,
      delayMs,
    });
  }

  /** Sleeps until the delay passes or something wakes the loop. */
  #sleep(ms: number): Promise<boolean> {
    if (this.#wakeRequested) {
      this.#wakeRequested = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const timer = Number.isFinite(ms)
        ? setTimeout(() => {
          this.#wake = undefined;
          resolve(false);
        }, ms)
        : undefined;
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve(true);
      };
    });
  }

  #poke() {
    if (this.#wake) this.#wake();
    else this.#wakeRequested = true;
  }

  #onClosed(closed: LinkClosed) {
    const error = closed.error;
    if (error && !(this.#closing && error instanceof ConnectionClosedError)) {
      logger.info("Connection to {address} closed: {message}", {
        address: this.address,
        message: error.message,
      });
    } else {
      logger.info("Connection to {address} closed", { address: this.address });
    }
    this.#hooks.emit("closed", {
      address: this.address,
      byClient: closed.byClient,
      replies: closed.replies,
      error,
    });
  }

  /**
   * Names what failed an attempt: a refused connection says ECONNREFUSED
   * and what to check, a missing permission names the flag.
   */
  #name(error: unknown): ClientError {
    if (error instanceof ClientError) return error;
    const address = this.address;
    const doing = `Cannot connect to ${address}`;
    const reason = error instanceof Error ? error.message : String(error);
    let message = `${doing}: ${reason}`;
    // A permission error explained already (reading a TLS file) keeps its
    // words; a bare one is explained here.
    const explained = error instanceof Deno.errors.NotCapable &&
      error.cause instanceof Deno.errors.NotCapable;
    const permission = explained ? undefined : permissionError(error, doing);
    if (permission) {
      message = permission.message;
    } else if (error instanceof Deno.errors.ConnectionRefused) {
      message =
        `${doing}: connection refused (ECONNREFUSED); check that the receiver is running and listening on that host and port`;
    } else if (
      /failed to lookup address|Name or service not known/i.test(reason)
    ) {
      message =
        `${doing}: cannot resolve the host name "${this.#hostname}" (${reason}); check the name`;
    }
    return new ConnectionRefusedError(message, { cause: error, address });
  }

  async #open(): Promise<Link> {
    const settings = this.#settings;
    const tls = settings.tls === undefined
      ? undefined
      : await (this.#tlsMaterial ??= loadClientTls(settings.tls));
    const controller = new AbortController();
    this.#connectAbort = controller;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, settings.connectTimeout);
    const started = performance.now();
    let opened: Link | undefined;
    try {
      const conn = await connect(
        this.#hostname,
        this.#port,
        tls,
        controller.signal,
      );
      const router: ReplyRouter = new ReplyRouter({
        release: settings.release,
        applicationAckTimeout: settings.applicationAckTimeout,
        read: settings.charset === undefined ? undefined : settings.read,
        address: this.address,
        // The router acts only once frames arrive, after `link` is set.
        write: (payload) => void link.write(payload).catch(() => {}),
        fail: (error) => void link.shutdown(error, true),
      });
      const link: Link = opened = new Link(conn, {
        maxFrameBytes: settings.maxFrameBytes,
        label: this.address,
        sentCertificate: tls?.cert !== undefined,
        intercept: router.intercept,
      });
      this.#routers.set(link, router);
      void link.closed.then(() => router.close());
      if (conn.secure) {
        const handshakeMs = performance.now() - started;
        await this.#settle(
          link,
          Math.min(
            Math.max(TLS_SETTLE_MS, 2 * handshakeMs),
            settings.connectTimeout - handshakeMs,
          ),
          controller.signal,
        );
      }
      return link;
    } catch (error) {
      void opened?.shutdown(undefined, true);
      if (controller.signal.aborted && !timedOut) {
        throw new ConnectionClosedError("The client was closed", {
          cause: error,
          address: this.address,
        });
      }
      if (timedOut) {
        throw new ConnectTimeoutError(
          `Cannot connect to ${this.address}: no connection within ${settings.connectTimeout} ms`,
          {
            cause: error,
            address: this.address,
            timeout: settings.connectTimeout,
          },
        );
      }
      if (error instanceof ClientError) throw error;
      if (tls && isTlsError(error)) {
        throw tlsHandshakeError(error, this.address, tls.cert !== undefined);
      }
      throw this.#name(error);
    } finally {
      clearTimeout(timer);
      this.#connectAbort = undefined;
    }
  }

  /**
   * Watches a new TLS link for `ms` milliseconds (see
   * {@linkcode TLS_SETTLE_MS}): a receiver that refuses the client's
   * certificate after the handshake closes it in that time.
   *
   * @throws {TlsHandshakeError} If the receiver refused the client.
   * @throws {ConnectionClosedError} If it closed the connection otherwise.
   * @throws {DOMException} If `signal` aborts (timeout or close).
   */
  async #settle(link: Link, ms: number, signal: AbortSignal): Promise<void> {
    const { promise: aborted, reject } = Promise.withResolvers<never>();
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const closed = await Promise.race([
        link.closed,
        aborted,
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
        }),
      ]);
      if (closed === undefined) return;
      if (closed.error instanceof TlsHandshakeError) {
        this.#finalFailure = true;
        throw closed.error;
      }
      throw new ConnectionClosedError(
        `Cannot connect to ${this.address}: the receiver closed the connection right after the TLS handshake (it may allow only some clients; its log says which)`,
        { cause: closed.error, context: "connecting", address: this.address },
      );
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Drops the connection, if there is one, and connects again at once
   * (the backoff starts over).
   *
   * @returns A promise that resolves when connected again.
   * @throws {ClientError} The error of the new attempt, if it fails.
   * @throws {ConnectionClosedError} If the connector is closed.
   */
  async reconnect(): Promise<void> {
    if (this.#closing) {
      throw new ConnectionClosedError(
        "Cannot reconnect: the client is closed",
        {
          address: this.address,
        },
      );
    }
    this.#reconnectNow = true;
    this.#demand = true;
    const waiting = new Promise<Link>((resolve, reject) => {
      this.#waiters.add({ resolve, reject, failFast: true });
    });
    const link = this.#link;
    if (link && !link.isClosed) {
      await link.shutdown(
        new ConnectionClosedError(
          `Connection to ${this.address} closed to reconnect`,
          { address: this.address },
        ),
        true,
      );
    } else {
      this.#poke();
    }
    await waiting;
  }

  /**
   * Rejects the waiters for a connection that should not wait for the next
   * attempt (all of them when `all`).
   */
  #failWaiters(error: ClientError, all = false) {
    const lazy = this.#settings.reconnect === false;
    const wait = this.#settings.whenDisconnected === "wait";
    for (const waiter of [...this.#waiters]) {
      if (!all && !waiter.failFast && !lazy && wait) continue;
      this.#waiters.delete(waiter);
      waiter.reject(error);
    }
    if (lazy) this.#demand = false;
  }

  /**
   * Resolves with an open link, waiting for one until `deadline`
   * (`performance.now()`).
   *
   * @param timeout The send's timeout, for messages.
   * @param deadline When to give up.
   * @param signal Aborts the wait.
   */
  awaitLink(
    timeout: number,
    deadline: number,
    signal?: AbortSignal,
  ): Promise<Link> {
    const link = this.#link;
    if (link && !link.isClosed) return Promise.resolve(link);
    if (this.#settings.whenDisconnected === "fail" && this.#lastError) {
      return Promise.reject(this.notConnected(0));
    }
    if (
      this.#finalFailure && this.#lastError &&
      this.#settings.reconnect !== false && this.#state !== "connecting"
    ) {
      // The next attempt would fail the same way (see #finalFailure).
      return Promise.reject(this.#lastError);
    }
    this.#demand = true;
    if (this.#settings.reconnect === false) this.#poke();
    return new Promise<Link>((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.#waiters.delete(waiter);
      };
      const waiter: LinkWaiter = {
        failFast: false,
        resolve: (l) => {
          finish();
          resolve(l);
        },
        reject: (e) => {
          finish();
          reject(e);
        },
      };
      const timer = setTimeout(
        () => waiter.reject(this.notConnected(timeout)),
        Math.max(0, deadline - performance.now()),
      );
      const onAbort = () => waiter.reject(abortError(signal));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(waiter);
    });
  }

  /**
   * The error of a send that found no connection: it names the last
   * failed attempt's error, if any.
   *
   * @param waited How long the send waited, in milliseconds (0: not at
   *   all).
   */
  notConnected(waited: number): ClientError {
    const last = this.#lastError;
    const prefix = `Cannot send to ${this.address}: not connected${
      waited ? ` within ${waited} ms` : ""
    }`;
    if (last instanceof TlsHandshakeError) {
      return new TlsHandshakeError(`${prefix}; ${last.message}`, {
        cause: last,
        address: this.address,
        refusedBy: last.refusedBy,
        failure: last.failure,
      });
    }
    if (last) {
      return new ConnectionRefusedError(`${prefix}; ${last.message}`, {
        cause: last,
        address: this.address,
      });
    }
    return new ConnectTimeoutError(`${prefix}`, {
      address: this.address,
      timeout: waited,
    });
  }

  /**
   * Stops reconnecting, fails the sends waiting for a connection, and
   * closes every link.
   *
   * @returns A promise that resolves once the loop has stopped; see
   *   {@linkcode Connector.done} for the links.
   */
  async close(): Promise<void> {
    this.#closing = true;
    this.#settleFirst(
      new ConnectionClosedError("The client was closed", {
        address: this.address,
      }),
    );
    const closed = new ConnectionClosedError("The client was closed", {
      address: this.address,
    });
    this.#failWaiters(closed, true);
    this.#connectAbort?.abort();
    this.#poke();
    await Promise.all([...this.#links].map((link) => link.shutdown(closed)));
    await this.#running;
  }

  /** Resolves when every link has wound down (after a close). */
  async done(): Promise<void> {
    await Promise.all([...this.#links].map((link) => link.done));
  }
}

async function loadClientTls(
  tls: ClientTlsOptions,
): Promise<ClientTlsMaterial> {
  return {
    caCerts: await loadPems(tls.caCerts, "the CA certificates (tls.caCerts)"),
    cert: tls.cert === undefined
      ? undefined
      : await loadPem(tls.cert, "the client certificate (tls.cert)"),
    key: tls.key === undefined
      ? undefined
      : await loadPem(tls.key, "the client key (tls.key)"),
    serverName: tls.serverName,
  };
}

/**
 * A receiver's limits on connections: how many may be open, in all and
 * from one address (checked when a peer connects, before anything is read
 * or a TLS handshake starts), and how long one may stay idle or take to
 * finish a frame (checked by one periodic sweep over all connections).
 *
 * @module
 */

import type { Address } from "../net/address.ts";

/** Which connection limit a peer would pass. */
export interface LimitReached {
  /** How many connections are open within the limit's scope. */
  open: number;
  /** The limit's scope, for the log line. */
  scope: "in all" | "from this address";
  /** The limit. */
  limit: number;
}

/** Counts open connections, in all and per address, against limits. */
export class ConnectionCounts {
  #open = 0;
  #byAddress = new Map<string, number>();
  #max: number;
  #maxPerClient: number;

  /**
   * Constructs the counts.
   *
   * @param max How many connections may be open in all.
   * @param maxPerClient How many may be open from one address.
   */
  constructor(max: number, maxPerClient: number) {
    this.#max = max;
    this.#maxPerClient = maxPerClient;
  }

  /**
   * Counts a new connection from `peer`, unless it would pass a limit.
   *
   * @param peer The connecting peer.
   * @returns `undefined` when counted; else the limit it would pass.
   */
  take(peer: Address): LimitReached | undefined {
    const fromPeer = this.#byAddress.get(peer.hostname) ?? 0;
    if (this.#open >= this.#max) {
      return { open: this.#open, scope: "in all", limit: this.#max };
    }
    if (fromPeer >= this.#maxPerClient) {
      return {
        open: fromPeer,
        scope: "from this address",
        limit: this.#maxPerClient,
      };
    }
    this.#open++;
    this.#byAddress.set(peer.hostname, fromPeer + 1);
    return undefined;
  }

  /**
   * Uncounts a connection counted by {@linkcode ConnectionCounts.take}.
   *
   * @param peer The peer whose connection closed.
   */
  release(peer: Address): void {
    this.#open--;
    const left = (this.#byAddress.get(peer.hostname) ?? 1) - 1;
    if (left > 0) this.#byAddress.set(peer.hostname, left);
    else this.#byAddress.delete(peer.hostname);
  }
}

/** What the timeouts need to know of a connection. */
export interface Activity {
  /** Whether a frame has started and not ended. */
  readonly inFrame: boolean;
  /** When the frame being received started, if one is. */
  readonly frameStartedAt: number | undefined;
  /** When the last bytes arrived (`performance.now()`). */
  readonly lastActivity: number;
}

/** The idle and frame timeouts, in ms (0: none). */
export interface Timeouts {
  idle: number;
  frame: number;
}

/**
 * Which timeout a connection has passed, if any: the frame timeout while a
 * frame is unfinished, else the idle timeout.
 *
 * @param connection The connection's activity.
 * @param now The time, from `performance.now()`.
 * @param timeouts The receiver's timeouts.
 * @returns The reason to close it, or `undefined`.
 */
export function expired(
  connection: Activity,
  now: number,
  timeouts: Timeouts,
): { kind: "frame" | "idle"; reason: string } | undefined {
  if (connection.inFrame) {
    const started = connection.frameStartedAt ?? connection.lastActivity;
    if (timeouts.frame > 0 && now - started > timeouts.frame) {
      return {
        kind: "frame",
        reason:
          `frame timeout: a frame was not finished within ${timeouts.frame} ms`,
      };
    }
  } else if (
    timeouts.idle > 0 && now - connection.lastActivity > timeouts.idle
  ) {
    return {
      kind: "idle",
      reason: `idle timeout: no data for ${timeouts.idle} ms`,
    };
  }
  return undefined;
}

/**
 * How often to sweep for both timeouts: often enough to act within about a
 * quarter of the shorter one; `undefined` when neither is set.
 *
 * @param timeouts The receiver's timeouts.
 * @returns The sweep interval in ms.
 */
export function sweepInterval(timeouts: Timeouts): number | undefined {
  const set = [timeouts.idle, timeouts.frame].filter((t) => t > 0);
  if (set.length === 0) return undefined;
  return Math.max(10, Math.min(5_000, Math.min(...set) / 4));
}

/**
 * The client's send queue: sends wait in call order, at most `maxQueued`
 * of them behind the one in flight, and one pump takes them out one at a
 * time (stop-and-wait, as MLLP expects). While there is no connection, a
 * queued send counts its wait against its connection wait (its timeout,
 * or the connect timeout if shorter).
 *
 * @module
 */

import type { Message } from "../hl7/message.ts";
import type { SendResult } from "./results.ts";

/** One send, from the call until it settles. */
export interface Job {
  message: Message;
  timeout: number;
  /**
   * How long the send may wait for a connection while it has none: its
   * timeout, or the client's connect timeout if that is shorter.
   */
  connectWait: number;
  signal?: AbortSignal;
  /** `sendAsync`: resolve once written, read and discard the reply. */
  detached: boolean;
  resolve(result: SendResult | undefined): void;
  reject(error: unknown): void;
  tries: number;
  settled: boolean;
  /**
   * Since when (`performance.now()`) the send has been waiting with no
   * connection, while queued; unset while there is one.
   */
  waitingSince?: number;
  /** Fails the send if it is still queued when its wait runs out. */
  timer?: ReturnType<typeof setTimeout>;
}

/** What a {@linkcode SendQueue} does with its sends. */
export interface SendQueueHandlers {
  /**
   * Runs one send (the pump waits for it before taking the next); resolves
   * with `true` to have it tried again at once (it was never written).
   */
  run(job: Job): Promise<boolean>;
  /** Fails a queued send whose wait for a connection ran out. */
  expire(job: Job): void;
}

/** The bounded queue of a client's sends, and the pump that runs them. */
export class SendQueue {
  #jobs: Job[] = [];
  #limit: number;
  #handlers: SendQueueHandlers;
  #pumping: Promise<void> = Promise.resolve();
  #active = false;
  /** Set by close: the error of a send found queued after it. */
  #closed: (() => Error) | undefined;

  /**
   * @param limit How many sends may wait (not counting the one in
   *   flight).
   * @param handlers What runs and what expires a send.
   */
  constructor(limit: number, handlers: SendQueueHandlers) {
    this.#limit = limit;
    this.#handlers = handlers;
  }

  /** How many sends wait (not counting the one in flight). */
  get length(): number {
    return this.#jobs.length;
  }

  /** Whether one more send would be refused. */
  get full(): boolean {
    return this.#jobs.length >= this.#limit && this.#active;
  }

  /** Resolves when the pump has stopped. */
  get idle(): Promise<void> {
    return this.#pumping;
  }

  /**
   * Queues a send; the pump starts if it is not running.
   *
   * @param message The message, read and checked.
   * @param timeout The send's timeout, in milliseconds.
   * @param connectWait How long it may wait for a connection while there
   *   is none, in milliseconds.
   * @param signal Drops the send while it is queued.
   * @param detached `sendAsync`: resolve once written.
   * @param connected Whether there is a connection now (if not, the
   *   send's wait starts counting).
   * @returns A promise of the send's result.
   */
  add(
    message: Message,
    timeout: number,
    connectWait: number,
    signal: AbortSignal | undefined,
    detached: boolean,
    connected: boolean,
  ): Promise<SendResult | undefined> {
    return new Promise((resolve, reject) => {
      const job: Job = {
        message,
        timeout,
        connectWait,
        signal,
        detached,
        resolve,
        reject,
        tries: 0,
        settled: false,
      };
      if (!connected) this.#startWaiting(job);
      if (signal) {
        signal.addEventListener("abort", () => {
          const index = this.#jobs.indexOf(job);
          if (index !== -1) {
            this.#jobs.splice(index, 1);
            settle(job, undefined, abortError(signal));
          }
        }, { once: true });
      }
      this.#jobs.push(job);
      if (!this.#active) {
        this.#active = true;
        this.#pumping = this.#pump();
      }
    });
  }

  /** A connection is up: the queued sends stop counting their wait. */
  connected() {
    for (const job of this.#jobs) stopWaiting(job);
  }

  /** The connection is gone: the queued sends start counting their wait. */
  disconnected() {
    for (const job of this.#jobs) this.#startWaiting(job);
  }

  /**
   * Starts the clock of a queued send waiting for a connection: it fails
   * when its connection wait passes with none, however many sends are
   * queued ahead of it. Time queued behind a send in flight on an open
   * connection does not count.
   */
  #startWaiting(job: Job) {
    if (job.waitingSince !== undefined) return;
    job.waitingSince = performance.now();
    job.timer = setTimeout(() => {
      job.timer = undefined;
      const index = this.#jobs.indexOf(job);
      if (index === -1) return; // started: awaitLink bounds its wait
      this.#jobs.splice(index, 1);
      this.#handlers.expire(job);
    }, job.connectWait);
  }

  /**
   * Fails every queued send, and any found queued later, with the error
   * `closed` makes.
   */
  close(closed: () => Error) {
    this.#closed = closed;
    for (const job of this.#jobs.splice(0)) settle(job, undefined, closed());
  }

  async #pump(): Promise<void> {
    try {
      while (true) {
        const job = this.#jobs.shift();
        if (!job) return;
        if (job.signal?.aborted) {
          settle(job, undefined, abortError(job.signal));
          continue;
        }
        if (this.#closed) {
          settle(job, undefined, this.#closed());
          continue;
        }
        // A send that was never written goes back to the head.
        if (await this.#handlers.run(job)) this.#jobs.unshift(job);
      }
    } finally {
      // In the same turn as the empty queue was seen, so a send queued
      // from here on starts a new pump.
      this.#active = false;
    }
  }
}

/** Stops the clock of a send waiting for a connection: one is up. */
export function stopWaiting(job: Job) {
  clearTimeout(job.timer);
  job.timer = undefined;
  job.waitingSince = undefined;
}

/** Settles a send once: with its result, or with `error` when given. */
export function settle(
  job: Job,
  result: SendResult | undefined,
  error?: unknown,
) {
  clearTimeout(job.timer);
  job.timer = undefined;
  if (job.settled) return;
  job.settled = true;
  if (error !== undefined) job.reject(error);
  else job.resolve(result);
}

/** The error of an aborted send: the signal's reason, if an error. */
export function abortError(signal?: AbortSignal): Error {
  const reason = signal?.reason;
  return reason instanceof Error
    ? reason
    : new DOMException("The send was aborted", "AbortError");
}

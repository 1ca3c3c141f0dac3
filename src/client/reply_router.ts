/**
 * The client's side of enhanced acknowledgment mode and MLLP release 2,
 * one per connection: it sees every frame before the link credits it to
 * the request in flight (see `LinkOptions.intercept`) and
 *
 * - consumes release 2 commit frames (`0x06`/`0x15`), handing them to the
 *   send waiting for one, and answers every other frame with `0x06`;
 * - tells when the receiver speaks the other MLLP release: with release 1,
 *   a lone `0x06` or `0x15` where an ACK was due; with release 2, a reply
 *   before any commit frame (see `ReleaseMismatchError`);
 * - notes the first ACK of an enhanced-mode send (its commit ACK, or its
 *   application ACK when MSH-15 kept the commit ACK back) and lets it
 *   through as the send's reply;
 * - consumes a later application ACK (matched by MSA-2) for an earlier
 *   send, resolving that send's `applicationAck`;
 * - consumes a duplicate reply to a message resent after a lost commit,
 *   and an application ACK that comes after `applicationAckTimeout`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { Ack } from "../hl7/ack.ts";
import { readMessage, type ReadMessageOptions } from "../hl7/message.ts";
import { type AckCondition, isCommitCode } from "../hl7/ack_conditions.ts";
import { COMMIT_ACK, COMMIT_FRAME, isCommitFrame } from "../wire/release2.ts";
import { ReleaseMismatchError } from "./errors.ts";

const logger = getLogger(["mllp", "client"]);

/** How many control ids whose late replies are swallowed are remembered. */
const MAX_LATE = 1024;

/** What a release 2 sender heard after writing a frame. */
export type CommitAnswer = "ack" | "nak";

interface ApplicationWaiter {
  /** MSH-16 of the message. */
  application: AckCondition;
  /** `first`: its first ACK is still to come; `app`: its application ACK. */
  state: "first" | "app";
  resolve(ack: Ack | undefined): void;
  timer?: ReturnType<typeof setTimeout>;
}

/** Options for a {@linkcode ReplyRouter}. */
export interface ReplyRouterOptions {
  /** The MLLP release. */
  release: 1 | 2;
  /** How long an application ACK may take after the commit ACK, in ms. */
  applicationAckTimeout: number;
  /** Writes a payload on the connection (for release 2 commit frames). */
  write(payload: Uint8Array): void;
  /** How ACKs are read, when the client was given charset options. */
  read?: ReadMessageOptions;
  /** The receiver's address, for messages. */
  address: string;
  /**
   * Closes the connection with an error, failing the send in flight (the
   * receiver speaks the other MLLP release).
   */
  fail(error: Error): void;
}

/** Routes one connection's incoming frames (see the module doc). */
export class ReplyRouter {
  #release: 1 | 2;
  #timeout: number;
  #write: (payload: Uint8Array) => void;
  #read: ReadMessageOptions | undefined;
  #address: string;
  #fail: (error: Error) => void;
  /** Whether the send in flight waits for an HL7 ACK (or response batch). */
  #ackDue = false;
  /** The send in flight, for messages: `message 7`, `the batch`. */
  #what = "the payload";
  /** How many release 2 commit frames came on this connection. */
  #commits = 0;
  #waiters = new Map<string, ApplicationWaiter>();
  #commit: ((answer: CommitAnswer) => void) | undefined;
  /** Control ids resent after a lost commit: late replies to swallow. */
  #extra = new Map<string, number>();
  /** Control ids of sends reported silent: a late ACK for them is logged. */
  #silent = new Set<string>();
  /** The control id of the send whose reply is due, until it comes. */
  #current: string | undefined;
  #closed = false;

  constructor(options: ReplyRouterOptions) {
    this.#release = options.release;
    this.#timeout = options.applicationAckTimeout;
    this.#write = options.write;
    this.#read = options.read;
    this.#address = options.address;
    this.#fail = options.fail;
  }

  /**
   * Notes the send about to go out: its reply is the next frame for its
   * control id. For an enhanced-mode message, returns the promise of its
   * application ACK.
   *
   * @param controlId MSH-10 of the message, if it is one.
   * @param application MSH-16, for an enhanced-mode message.
   * @param ackDue Whether an HL7 ACK (or a response batch) is due: the
   *   payload is HL7.
   */
  begin(
    controlId: string | undefined,
    application?: AckCondition,
    ackDue = controlId !== undefined,
  ): Promise<Ack | undefined> | undefined {
    this.#current = controlId;
    this.#ackDue = ackDue;
    this.#what = controlId !== undefined
      ? `message ${controlId}`
      : ackDue
      ? "the batch"
      : "the payload";
    if (controlId === undefined || application === undefined) return;
    if (this.#closed) return Promise.resolve(undefined);
    const { promise, resolve } = Promise.withResolvers<Ack | undefined>();
    this.#waiters.get(controlId)?.resolve(undefined);
    const waiter: ApplicationWaiter = {
      application,
      state: "first",
      resolve: (ack) => {
        clearTimeout(waiter.timer);
        if (this.#waiters.get(controlId) === waiter) {
          this.#waiters.delete(controlId);
        }
        resolve(ack);
      },
    };
    this.#waiters.set(controlId, waiter);
    return promise;
  }

  /**
   * The send is over (its reply came, or it failed): if its first ACK
   * never came, no application ACK will be credited to it.
   */
  end(controlId: string | undefined) {
    if (this.#current === controlId) this.#current = undefined;
    this.#ackDue = false;
    if (controlId === undefined) return;
    const waiter = this.#waiters.get(controlId);
    if (waiter?.state === "first") waiter.resolve(undefined);
  }

  /** Waits for the next release 2 commit frame (set before writing). */
  expectCommit(): Promise<CommitAnswer> {
    return new Promise((resolve) => this.#commit = resolve);
  }

  /** Stops waiting for a commit frame. */
  forgetCommit() {
    this.#commit = undefined;
  }

  /** A copy of this message was resent: one more reply may come for it. */
  resent(controlId: string | undefined) {
    if (controlId !== undefined) this.#expectLate(controlId);
  }

  /**
   * A send was reported silent (no acknowledgment within its timeout):
   * should one come after all, it is dropped with a warning.
   */
  silent(controlId: string | undefined) {
    if (controlId === undefined) return;
    this.#expectLate(controlId);
    this.#silent.add(controlId);
    if (this.#silent.size > MAX_LATE) {
      this.#silent.delete(this.#silent.values().next().value!);
    }
  }

  /**
   * One more late reply may come for a control id: swallow it. At most
   * {@linkcode MAX_LATE} ids are remembered (the oldest are forgotten), so
   * replies that never come (MSH-16 `ER` after a success) cost nothing
   * for long.
   */
  #expectLate(controlId: string) {
    const count = this.#extra.get(controlId) ?? 0;
    this.#extra.delete(controlId);
    this.#extra.set(controlId, count + 1);
    if (this.#extra.size > MAX_LATE) {
      this.#extra.delete(this.#extra.keys().next().value!);
    }
  }

  /** The connection closed: no application ACK will come on it. */
  close() {
    this.#closed = true;
    this.#commit = undefined;
    for (const waiter of [...this.#waiters.values()]) waiter.resolve(undefined);
  }

  /** Sees a frame first; returns `true` when it is consumed. */
  intercept = (frame: Uint8Array): boolean => {
    if (this.#release === 2) {
      if (isCommitFrame(frame)) {
        this.#commits++;
        const commit = this.#commit;
        this.#commit = undefined;
        commit?.(frame[0] === COMMIT_ACK ? "ack" : "nak");
        return true;
      }
      if (this.#commits === 0 && this.#commit !== undefined) {
        // A release 2 receiver commits a frame before it replies.
        return this.#mismatch(1, frame);
      }
      // Commit every frame received (the receiver consumes these).
      this.#write(COMMIT_FRAME);
    } else if (this.#ackDue && isCommitFrame(frame)) {
      return this.#mismatch(2, frame);
    }
    if (this.#waiters.size === 0 && this.#extra.size === 0) {
      this.#current = undefined;
      return false;
    }
    let ack: Ack;
    try {
      ack = Ack.parse(
        this.#read === undefined ? frame : readMessage(frame, this.#read),
      );
    } catch {
      this.#current = undefined;
      return false;
    }
    const id = ack.messageControlId;
    const waiter = this.#waiters.get(id);
    if (waiter?.state === "app") {
      if (isCommitCode(ack.code)) return this.#swallow(id) || true;
      waiter.resolve(ack);
      return true;
    }
    if (this.#current !== id && this.#swallow(id)) {
      if (this.#silent.delete(id)) {
        logger.warn(
          "Acknowledgment {code} for {controlId} came after its send was reported silent; dropped",
          { code: ack.code, controlId: id },
        );
      }
      return true;
    }
    if (this.#current === id) this.#current = undefined;
    if (waiter?.state === "first") {
      if (!isCommitCode(ack.code)) {
        // MSH-15 kept the commit ACK back: this is the application ACK.
        waiter.resolve(ack);
      } else if (ack.code !== "CA" || waiter.application === "NE") {
        waiter.resolve(undefined);
      } else {
        waiter.state = "app";
        waiter.timer = setTimeout(() => {
          waiter.resolve(undefined);
          // Should it come after all, it is no reply to a later send.
          this.#expectLate(id);
        }, this.#timeout);
      }
    }
    return false;
  };

  /**
   * The receiver speaks the other MLLP release: closes the connection
   * with an error that says so and names the option, failing the send in
   * flight. Returns `true`: the frame is consumed.
   */
  #mismatch(peerRelease: 1 | 2, frame: Uint8Array): true {
    const address = this.#address;
    const what = this.#what;
    let message: string;
    if (peerRelease === 2) {
      message = frame[0] === COMMIT_ACK
        ? `${address} answered ${what} with a lone 0x06, the commit frame of MLLP release 2, where an ACK was due: the receiver speaks MLLP release 2 (it took the message, and its ACK comes next); send with mllpRelease: 2 (mllp send --mllp-release 2)`
        : `${address} answered ${what} with a lone 0x15, the NAK of MLLP release 2, where an ACK was due: the receiver speaks MLLP release 2 (it could not take the message); send with mllpRelease: 2 (mllp send --mllp-release 2), which writes a message again after a NAK`;
    } else {
      message =
        `${address} replied to ${what} without a commit frame (0x06) before the reply: the receiver speaks MLLP release 1 (its reply: ${
          describeReply(frame, this.#read)
        }); send with mllpRelease: 1, the default (mllp send without --mllp-release 2)`;
    }
    const error = new ReleaseMismatchError(message, {
      address,
      peerRelease,
      reply: frame,
    });
    logger.warn("{message}; closing the connection", { message });
    this.#fail(error);
    return true;
  }

  /** Swallows a late duplicate reply for a resent message, if one is due. */
  #swallow(id: string): boolean {
    const extra = this.#extra.get(id);
    if (!extra) return false;
    if (extra > 1) this.#extra.set(id, extra - 1);
    else this.#extra.delete(id);
    return true;
  }
}

/** A reply in a few words: `ACK AA`, or its size. */
function describeReply(
  frame: Uint8Array,
  read: ReadMessageOptions | undefined,
): string {
  try {
    const ack = Ack.parse(
      read === undefined ? frame : readMessage(frame, read),
    );
    return `ACK ${ack.code}`;
  } catch {
    return `${frame.length} bytes that are not an ACK`;
  }
}

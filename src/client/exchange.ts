/**
 * One send on a link: wait for a connection, write the message, await its
 * reply (or the silence an enhanced-mode message allows), verify it
 * (MSA-2 must equal MSH-10), and settle the send with a typed result; with
 * MLLP release 2, the commit waits run beside it (see `release2.ts`).
 * Telemetry and the client's send events are recorded here.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { type AckResult, verifyAck } from "../hl7/ack.ts";
import { ackModeOf, silenceMeans } from "../hl7/ack_conditions.ts";
import { decodeText, type Message, readMessage } from "../hl7/message.ts";
import { HeaderError } from "../hl7/errors.ts";
import {
  endSpan,
  recordClientError,
  recordClientSend,
  startSendSpan,
} from "../observe/telemetry.ts";
import type { Connector } from "./connector.ts";
import { ClientError, InvalidReplyError, ReplyTimeoutError } from "./errors.ts";
import type { Emit } from "./events.ts";
import { type Link, SilenceError } from "./link.ts";
import type { ClientSettings } from "./options.ts";
import {
  type Job,
  type SendQueueHandlers,
  settle,
  stopWaiting,
} from "./queue.ts";
import { awaitCommit, type CommitSettings } from "./release2.ts";
import type { ReplyResult, SendResult, SilentResult } from "./results.ts";

const logger = getLogger(["mllp", "client"]);

/** Runs a client's sends, one at a time, on the connector's links. */
export class Exchange implements SendQueueHandlers {
  #address: string;
  #settings: ClientSettings;
  #connector: Connector;
  #emit: Emit;
  #listens: (type: "reply") => boolean;
  #commits: CommitSettings;

  /**
   * @param settings The client's settings.
   * @param connector Where links come from.
   * @param emit Emits the client's events.
   * @param listens Whether anyone listens for an event sent per message.
   */
  constructor(
    settings: ClientSettings,
    connector: Connector,
    emit: Emit,
    listens: (type: "reply") => boolean,
  ) {
    this.#address = connector.address;
    this.#settings = settings;
    this.#connector = connector;
    this.#emit = emit;
    this.#listens = listens;
    this.#commits = {
      address: connector.address,
      commitTimeout: settings.commitTimeout,
      commitRetries: settings.commitRetries,
    };
  }

  /** Fails a queued send whose wait for a connection ran out. */
  expire(job: Job) {
    this.fail(job, this.#connector.notConnected(job.connectWait), false);
  }

  /**
   * Runs one send and settles it.
   *
   * @returns `true` when it failed before it was written and may be tried
   *   again (see `retryUnwritten`); it is then not settled.
   */
  async run(job: Job): Promise<boolean> {
    const { message } = job;
    const controlId = message.header?.controlId;
    const span = startSendSpan(
      this.#address,
      controlId,
      message.header?.messageType,
    );
    let written = false;
    let started = 0;
    // Out of the queue: from here awaitLink bounds the wait, counting the
    // time already waited with no connection.
    const deadline = (job.waitingSince ?? performance.now()) +
      job.connectWait;
    stopWaiting(job);
    try {
      const link = await this.#connector.awaitLink(
        job.connectWait,
        deadline,
        job.signal,
      );
      job.tries++;
      if (!logger.isEnabledFor("debug")) {
        // Nothing to log: skip building the line's properties.
      } else if (controlId === undefined) {
        logger.debug("Sending {size} byte non-HL7 payload to {address}", {
          size: message.size,
          address: this.#address,
        });
      } else {
        logger.debug(
          "Sending HL7 message {controlId} ({size} bytes) to {address}",
          { controlId, size: message.size, address: this.#address },
        );
      }
      const router = this.#connector.routerOf(link);
      const mode = message.kind === "hl7"
        ? ackModeOf(message.header)
        : undefined;
      const applicationAck = router.begin(
        controlId,
        mode?.mode === "enhanced" ? mode.application : undefined,
        message.kind !== "unknown",
      );
      const commit = this.#settings.release === 2
        ? router.expectCommit()
        : undefined;
      const silence = mode ? silenceMeans(mode) : undefined;
      let frame: Uint8Array;
      try {
        const requesting = link.request(
          message.raw,
          job.timeout,
          job.signal,
          () => {
            written = true;
            started = performance.now();
            if (job.detached) settle(job, undefined);
          },
          silence !== undefined,
        );
        if (commit) {
          void awaitCommit(
            link,
            router,
            message,
            commit,
            requesting,
            this.#commits,
          );
        }
        frame = await requesting;
      } catch (error) {
        if (!(error instanceof SilenceError) || silence === undefined) {
          throw error;
        }
        // Should an acknowledgment come after all, it answers no later
        // send.
        router.silent(controlId);
        const result: SilentResult = {
          ok: silence === "accepted",
          outcome: "silent",
          means: silence,
          controlId: controlId ?? "",
          waitedMs: error.timeout,
        };
        recordClientSend("silent", undefined, error.timeout, message.size, 0);
        endSpan(span, undefined);
        settle(job, result);
        return false;
      } finally {
        router.end(controlId);
        if (commit) router.forgetCommit();
      }
      const roundTripMs = performance.now() - started;
      const verified = this.#verify(message, frame, link);
      const result: SendResult = applicationAck && verified.outcome !== "reply"
        ? { ...verified, applicationAck }
        : verified;
      const ackCode = "code" in result ? result.code : undefined;
      recordClientSend(
        result.outcome,
        ackCode,
        roundTripMs,
        message.size,
        frame.length,
      );
      endSpan(span, ackCode);
      if (this.#listens("reply")) {
        this.#emit("reply", {
          address: this.#address,
          controlId,
          outcome: result.outcome,
          ackCode,
          roundTripMs,
          bytes: frame.length,
        });
      }
      settle(job, result);
      return false;
    } catch (error) {
      if (
        !written && !this.#connector.closing &&
        job.tries <= this.#settings.retryUnwritten &&
        job.tries > 0 && error instanceof ClientError &&
        !(job.signal?.aborted)
      ) {
        logger.info(
          "Send of {controlId} to {address} failed before it was written; trying again ({tries})",
          {
            controlId: controlId ?? "",
            address: this.#address,
            tries: job.tries,
          },
        );
        endSpan(span, undefined, error);
        return true;
      }
      const named = error instanceof Error ? error : new Error(String(error));
      endSpan(span, undefined, named);
      if (named instanceof ReplyTimeoutError) {
        this.#emit("replytimeout", {
          address: this.#address,
          controlId,
          timeoutMs: named.timeout,
        });
      } else if (named instanceof InvalidReplyError) {
        this.#emit("invalidreply", {
          address: this.#address,
          controlId,
          problem: named.problem,
          detail: named.message,
        });
      }
      if (job.detached && written) {
        logger.warn(
          "Reply to {controlId} (sent without waiting) from {address}: {message}",
          {
            controlId: controlId ?? "",
            address: this.#address,
            message: named.message,
          },
        );
      }
      this.fail(job, named, written);
      return false;
    }
  }

  /** Fails a send: counts it, emits `senderror`, rejects it. */
  fail(job: Job, error: Error, written: boolean) {
    recordClientError(error.name);
    this.#emit("senderror", {
      address: this.#address,
      controlId: job.message.header?.controlId,
      error,
      written,
    });
    settle(job, undefined, error);
  }

  #verify(
    message: Message,
    frame: Uint8Array,
    link: Link,
  ): AckResult | ReplyResult {
    // A batch's reply is a response batch (or one ACK): see sendBatch.
    if (message.kind !== "hl7") {
      return {
        ok: true,
        outcome: "reply",
        reply: frame,
        text: decodeText(frame),
      };
    }
    const result = this.#settings.charset === undefined
      ? verifyAck(message, frame)
      : this.#verifyRead(message, frame);
    const controlId = message.header.controlId;
    if (result.outcome === "mismatch") {
      const detail =
        `ACK from ${this.#address} names control id "${result.ack.messageControlId}", expected "${result.expected}"`;
      logger.warn("{detail}; closing the connection", { detail });
      this.#emit("invalidreply", {
        address: this.#address,
        controlId,
        problem: "control_id_mismatch",
        detail,
      });
      void link.shutdown(
        new InvalidReplyError(detail, {
          address: this.#address,
          problem: "control_id_mismatch",
        }),
        true,
      );
    } else if (result.outcome === "not_ack") {
      this.#emit("invalidreply", {
        address: this.#address,
        controlId,
        problem: "not_ack",
        detail: result.reason,
      });
    }
    return result;
  }

  /** Verifies a reply read with the client's charset options. */
  #verifyRead(message: Message, frame: Uint8Array): AckResult {
    let reply: Message;
    try {
      reply = readMessage(frame, this.#settings.read);
    } catch (error) {
      if (!(error instanceof HeaderError) && !(error instanceof TypeError)) {
        throw error;
      }
      return {
        ok: false,
        outcome: "not_ack",
        reason: error.message,
        reply: frame,
      };
    }
    return verifyAck(message, reply);
  }
}

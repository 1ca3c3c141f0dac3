/**
 * `mllp listen`'s dispatchers: `--reply aa|ae|ar` chooses the answer, and
 * `--save DIR` writes each message to a file before it is answered.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { Ack } from "../hl7/ack.ts";
import {
  type DispatchContext,
  type DispatcherObject,
  type DispatchReply,
  ECHO_TEXT,
  NAK,
  UNKNOWN_REPLY,
} from "../dispatch/dispatcher.ts";
import { logInfo } from "./common.ts";
import { formatAddress } from "../net/address.ts";
import type { Message } from "../hl7/message.ts";
import { buildBatchResponse } from "../hl7/batch.ts";

const logger = getLogger(["mllp", "cli"]);

/** The codes `--reply` takes. */
export type ReplyMode = "aa" | "ae" | "ar";

/** The MSA-3 text of `--reply ae` and `--reply ar`. */
export const REPLY_TEXTS: Record<"ae" | "ar", string> = {
  ae: "Application error (mllp listen --reply ae)",
  ar: "Application reject (mllp listen --reply ar)",
};

/**
 * The dispatcher of `--reply MODE`: `aa` answers as the EchoDispatcher
 * does (HL7 with `AA` and its text, anything else with `mllp_unknown`);
 * `ae` and `ar` answer HL7 with that code and {@linkcode REPLY_TEXTS}, and
 * any other payload with a NAK (`0x15`). One line per message is logged
 * (the body at debug). A whole batch (`--batches whole`) gets a
 * response batch: every message accepted with `aa`, else every message
 * answered with that code.
 */
export function replyDispatcher(mode: ReplyMode): DispatcherObject {
  const code = mode === "aa" ? "AA" : mode === "ae" ? "AE" : "AR";
  return {
    dispatch(
      message: Message,
      ctx: DispatchContext,
    ): DispatchReply | Promise<DispatchReply> {
      const peer = formatAddress(ctx.peer);
      if (message.kind === "batch") {
        logger.info(
          "Answering {code} (--reply {mode}) to each of the {count} messages of batch {controlId} ({size} bytes) from {peer}",
          {
            code,
            mode,
            count: message.entries.length,
            controlId: message.controlId,
            size: message.size,
            peer,
          },
        );
        // Nothing: the receiver sends the response batch, all accepted.
        if (mode === "aa") return undefined;
        return buildBatchResponse(message, code).raw;
      }
      if (message.kind !== "hl7") {
        if (mode === "aa") {
          // As the EchoDispatcher answers.
          logInfo(
            logger,
            "Answering {reply} (--reply {mode}) to a {size} byte payload that is not HL7 from {peer}",
            { reply: UNKNOWN_REPLY, mode, size: message.size, peer },
          );
          return UNKNOWN_REPLY;
        }
        logInfo(
          logger,
          "Answering NAK (--reply {mode}) to a {size} byte payload that is not HL7 from {peer}",
          { mode, size: message.size, peer },
        );
        return new Uint8Array([NAK]);
      }
      logInfo(
        logger,
        "Answering {code} (--reply {mode}) to {messageType} control id {controlId} ({size} bytes) from {peer}",
        {
          code,
          mode,
          messageType: message.header.messageType,
          controlId: message.header.controlId,
          size: message.size,
          peer,
        },
      );
      if (logger.isEnabledFor("debug")) {
        logger.debug("Message body: {body}", { body: message.text });
      }
      return Ack.forMessage(message, code, {
        text: mode === "aa" ? ECHO_TEXT : REPLY_TEXTS[mode],
      });
    },
  };
}

/**
 * The file name for a message: its control id with every character other
 * than letters, digits, `.`, `_` and `-` replaced by `_` (and a leading `.`
 * too, so no name is hidden or `..`), cut to 100 characters, plus `.hl7`.
 * A message without a control id is `no-control-id.hl7`, a payload that
 * is not HL7 `not-hl7.bin`; a whole batch (`--batches whole`) is named
 * after its BHS-11 (or FHS-11). Names that Windows reserves get a `_`
 * first.
 */
export function saveName(message: Message): [base: string, ext: string] {
  if (message.kind === "unknown") return ["not-hl7", ".bin"];
  let base =
    (message.kind === "hl7" ? message.header.controlId : message.controlId)
      .replace(/[^A-Za-z0-9._-]/g, "_")
      .replace(/^\./, "_")
      .slice(0, 100);
  if (base === "") base = "no-control-id";
  if (/^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$/i.test(base)) base = `_${base}`;
  return [base, ".hl7"];
}

/**
 * Writes messages to a directory, one file each, never overwriting: a
 * name already taken gets `-2`, `-3`, ... before its extension. Each file
 * is created with `createNew` (so two connections cannot take one name)
 * and synced to disk before {@linkcode save} resolves.
 */
export class MessageSaver {
  #dir: string;
  /** The next suffix to try for a name, so repeats do not rescan. */
  #next = new Map<string, number>();

  constructor(dir: string) {
    this.#dir = dir.endsWith("/") && dir.length > 1 ? dir.slice(0, -1) : dir;
  }

  /**
   * Writes the message's bytes, exactly as received.
   *
   * @returns The path written.
   * @throws {Error} If the file cannot be written (nothing is left behind).
   */
  async save(message: Message): Promise<string> {
    const [base, ext] = saveName(message);
    for (let n = this.#next.get(base) ?? 1;; n++) {
      const path = `${this.#dir}/${n === 1 ? base : `${base}-${n}`}${ext}`;
      let file: Deno.FsFile;
      try {
        file = await Deno.open(path, { write: true, createNew: true });
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) continue;
        throw error;
      }
      this.#next.set(base, n + 1);
      try {
        let written = 0;
        while (written < message.raw.length) {
          written += await file.write(message.raw.subarray(written));
        }
        await file.syncData();
      } catch (error) {
        file.close();
        await Deno.remove(path).catch(() => {});
        throw error;
      }
      file.close();
      return path;
    }
  }
}

/**
 * Wraps a dispatcher so each message is saved before it is dispatched
 * (and so before it is answered). A message that cannot be saved is
 * answered `AE` (a NAK if it is not HL7) and not dispatched.
 */
export function savingDispatcher(
  saver: MessageSaver,
  inner: DispatcherObject,
): DispatcherObject {
  return {
    async dispatch(message: Message, ctx: DispatchContext) {
      let path: string;
      try {
        path = await saver.save(message);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        logger.error("Cannot save message {controlId}: {reason}", {
          controlId: message.kind === "hl7"
            ? message.header.controlId
            : message.kind === "batch"
            ? `(batch ${message.controlId})`
            : "(not HL7)",
          reason,
        });
        if (message.kind === "batch") {
          return buildBatchResponse(message, "AE").raw;
        }
        if (message.kind !== "hl7") return new Uint8Array([NAK]);
        return Ack.forMessage(message, "AE", {
          text: `Cannot save message: ${reason}`,
        });
      }
      if (message.kind !== "unknown") {
        logger.info("Saved {what} {controlId} as {path}", {
          what: message.kind === "hl7" ? "message" : "batch",
          controlId: message.kind === "hl7"
            ? message.header.controlId
            : message.controlId,
          path,
        });
      } else {
        logger.info("Saved a payload that is not HL7 as {path}", { path });
      }
      return await inner.dispatch(message, ctx);
    },
  };
}

/**
 * The sender's side of MLLP release 2: after a frame is written, wait for
 * the receiver's one-byte commit frame; on a timeout or a NAK write the
 * same frame again, up to `commitRetries` times, then give up with a
 * {@linkcode CommitError} (the frame's outcome is unknown). The commit
 * frames themselves are picked out of the incoming frames by the
 * connection's `ReplyRouter`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Message } from "../hl7/message.ts";
import { CommitError } from "./errors.ts";
import type { Link } from "./link.ts";
import type { CommitAnswer, ReplyRouter } from "./reply_router.ts";

const logger = getLogger(["mllp", "client"]);

/** What {@linkcode awaitCommit} needs to know of its client. */
export interface CommitSettings {
  /** The receiver's address, for messages. */
  address: string;
  /** How long to wait for the commit frame after each write, in ms. */
  commitTimeout: number;
  /** How many times a frame that was not committed is written again. */
  commitRetries: number;
}

/**
 * Waits for the commit frame of the frame just written; resends it on a
 * timeout or a NAK, up to `commitRetries` times, then closes the link
 * with a {@linkcode CommitError}. Ends when the commit or the reply comes,
 * or the link closes.
 *
 * @param link The link the frame was written on.
 * @param router The link's reply router.
 * @param message The message written.
 * @param first The commit answer to the first write.
 * @param requesting The request in flight: settles when the reply comes
 *   or the send fails.
 * @param settings The address and the commit timeout and retries.
 */
export async function awaitCommit(
  link: Link,
  router: ReplyRouter,
  message: Message,
  first: Promise<CommitAnswer>,
  requesting: Promise<unknown>,
  settings: CommitSettings,
): Promise<void> {
  const { address, commitTimeout, commitRetries } = settings;
  const replied = requesting.then(
    () => "replied" as const,
    () => "replied" as const,
  );
  const controlId = message.header?.controlId;
  let commit = first;
  let answer: CommitAnswer | "timeout" | "replied" = "timeout";
  for (let attempt = 1;; attempt++) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    answer = await Promise.race([
      commit,
      replied,
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), commitTimeout);
      }),
    ]);
    clearTimeout(timer);
    if (answer === "ack") {
      link.restartDeadline();
      return;
    }
    if (answer === "replied" || link.isClosed) return;
    if (attempt > commitRetries) {
      const error = new CommitError(
        `${address} did not commit ${
          controlId === undefined ? "the payload" : `message ${controlId}`
        } after ${attempt} writes (${
          answer === "nak"
            ? "the last answer was a NAK"
            : `no commit frame within ${commitTimeout} ms`
        }); its outcome is unknown`,
        { address, attempts: attempt, last: answer },
      );
      logger.warn("{message}; closing the connection", {
        message: error.message,
      });
      void link.shutdown(error, true);
      return;
    }
    logger.info(
      "No commit for {controlId} from {address} ({answer}); writing it again ({attempt} of {retries})",
      {
        controlId: controlId ?? "",
        address,
        answer: answer === "nak" ? "NAK" : "timeout",
        attempt,
        retries: commitRetries,
      },
    );
    // After a lost commit, the first copy's reply may still come.
    if (answer === "timeout") router.resent(controlId);
    commit = router.expectCommit();
    try {
      await link.write(message.raw);
    } catch {
      return; // The link closed: the send fails with its reason.
    }
    link.restartDeadline();
  }
}

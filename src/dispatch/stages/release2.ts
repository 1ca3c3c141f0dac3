/**
 * The MLLP release 2 stage: every frame a receiver takes is committed with
 * the one-byte frame `0x06` before its reply; a frame it could not take
 * gets `0x15` (NAK) alone, and the sender sends it again.
 *
 * When the message counts as taken depends on the receiver:
 *
 * - Without a store, on arrival: `0x06` goes out before anything else runs.
 * - With a store, once it is stored (the store stage sets
 *   `exchange.stored`): `0x06` goes out after the stages below answered
 *   and before their reply; a message the store could not keep, or did not
 *   finish storing before the dispatch timeout, gets the NAK instead of
 *   anything else. Payloads the store does not keep (not HL7) are taken on
 *   arrival as without a store.
 *
 * A frame that cannot be read as a message never reaches the stages: the
 * dispatch stream commits it itself before its `AR`.
 *
 * @module
 */

import { COMMIT_FRAME, NAK_FRAME } from "../../wire/release2.ts";
import { type Stage, thenReply } from "../stage.ts";

/** What the release 2 stage needs to know. */
export interface Release2Settings {
  /** Whether a store stage below takes messages (commit after storing). */
  store: boolean;
}

/**
 * The release 2 stage; put it outermost, so that its commit frame goes
 * out ahead of anything the stages below send.
 *
 * @param settings Whether a store stage commits messages.
 * @returns The stage.
 */
export function release2Stage<C>(settings: Release2Settings): Stage<C> {
  const { store } = settings;
  return {
    name: store ? "release 2 (commit once stored)" : "release 2",
    handle(exchange, next) {
      if (!store || exchange.message.kind === "unknown") {
        exchange.send(COMMIT_FRAME);
        return next(exchange);
      }
      return thenReply(next(exchange), (reply) => {
        if (exchange.stored === false) return NAK_FRAME;
        exchange.send(COMMIT_FRAME);
        return reply;
      });
    },
    failed(exchange, reply) {
      // With a store, an HL7 message not stored in time was not taken.
      return store && exchange.stored !== true ? NAK_FRAME : reply;
    },
  };
}

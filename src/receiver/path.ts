/**
 * The receiver's message path, in one place: the stages every frame goes
 * through between the framer and the application's dispatcher, outermost
 * first. Each stage and its contract is in `src/dispatch/stages/`.
 *
 * ```text
 * frame → read (DispatchStream) ─ AR if the header cannot be read
 *       → release 2      commit frame 0x06 / NAK 0x15        (mllpRelease: 2)
 *       → batches        one response batch per FHS/BHS frame
 *       → enhanced mode  CA/CE/CR, then the application ACK  (MSH-15/16 valued)
 *       → store          persist, then AA "Stored"           (store)
 *       → dispatcher
 * ```
 *
 * @module
 */

import type { ApplicationAckRoute } from "../dispatch/ack_modes.ts";
import type { MessageStore } from "../dispatch/message_store.ts";
import { compose, type Path } from "../dispatch/stage.ts";
import { type BatchMode, batchStage } from "../dispatch/stages/batches.ts";
import { enhancedStage } from "../dispatch/stages/enhanced.ts";
import { release2Stage } from "../dispatch/stages/release2.ts";
import { storeStage } from "../dispatch/stages/store.ts";
import type { Dispatcher } from "../dispatch/types.ts";
import { asFunction } from "../dispatch/_util.ts";
import type { BatchAcks } from "../hl7/batch.ts";

/** The receiver options the path is made of. */
export interface PathOptions<C> {
  dispatcher: Dispatcher<C>;
  store?: MessageStore;
  mllpRelease: 1 | 2;
  enhancedMode: boolean;
  applicationAcks: ApplicationAckRoute<C>;
  batches: BatchMode;
  batchAcks: BatchAcks;
}

/**
 * Composes the receiver's path from its options.
 *
 * @param options The receiver's settings for each stage.
 * @returns The path its connections run.
 */
export function receiverPath<C>(options: PathOptions<C>): Path<C> {
  const dispatcher = asFunction(options.dispatcher);
  const store = options.store ? storeStage<C>(options.store) : undefined;
  return compose([
    options.mllpRelease === 2
      ? release2Stage({ store: store !== undefined })
      : undefined,
    batchStage({
      mode: options.batches,
      acks: options.batchAcks,
      // Each message of a batch: stored (with a store), answered in the
      // response batch; original mode, no commit frames of its own.
      each: compose([store], dispatcher),
    }),
    options.enhancedMode
      ? enhancedStage({
        applicationAcks: options.applicationAcks,
        store: store !== undefined,
      })
      : undefined,
    store,
  ], dispatcher);
}

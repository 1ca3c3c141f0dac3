/**
 * Durable delivery on a NATS JetStream cluster, for receivers that scale
 * out: {@linkcode JetStreamMessageStore} is a receiver's `store` that
 * publishes each HL7 message to a replicated stream before the ACK goes
 * out, answers resends from the stream, and dispatches from a durable pull
 * consumer that the receivers of a group share. {@linkcode JetStreamOutbox}
 * is a sender's durable queue on the same cluster: `enqueue` returns once
 * the stream has the message, and workers in any process deliver each
 * destination's queue in order, acking in the stream only after the
 * destination's `AA`/`CA`. See `docs/scaling.md` for the picture and the
 * guarantees.
 *
 * This entry is the only part of `@x/mllp` that loads NATS
 * (`@nats-io/jetstream` and `@nats-io/transport-node`); `@x/mllp` and
 * `@x/mllp/store` do not. It needs `--allow-net` for the NATS servers.
 *
 * @example A receiver on a three-node cluster
 * ```ts ignore
 * // Needs a NATS cluster with JetStream (see docs/durable.md).
 * import { Receiver } from "@x/mllp";
 * import { JetStreamMessageStore } from "@x/mllp/jetstream";
 *
 * await using store = await JetStreamMessageStore.open(
 *   "nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222",
 * );
 * await using receiver = await Receiver.start({
 *   port: 2575,
 *   store,
 *   dispatcher: (message, ctx) => {
 *     // Runs once the message is in the stream, on one receiver.
 *   },
 * });
 * ```
 *
 * @example A queue to a lab system, delivered by workers in any process
 * ```ts ignore
 * // Needs a NATS cluster with JetStream (see docs/scaling.md).
 * import { JetStreamOutbox } from "@x/mllp/jetstream";
 *
 * await using outbox = await JetStreamOutbox.open("nats://10.0.0.1:4222", {
 *   destination: { hostname: "lab.example.org", port: 2575 },
 * });
 * await outbox.enqueue("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|Q1|P|2.5\r");
 * outbox.start();
 * ```
 *
 * @module
 */

export { JetStreamMessageStore } from "./jetstream_store.ts";
export type {
  JetStreamMessageStoreOptions,
  JetStreamParkedRecord,
  JetStreamStoredRecord,
  JetStreamStoreStats,
} from "./jetstream_store_types.ts";
export type {
  JetStreamConnectionOptions,
  JetStreamTlsOptions,
} from "./jetstream_connection.ts";
export type {
  MessageStore,
  StoreConsumer,
  StoredDispatchContext,
  StoredMessage,
  StoredMessageHandler,
  StoredOutcome,
  StoreEntry,
  StorePutResult,
} from "../dispatch/message_store.ts";
export { STORED_TEXT } from "../dispatch/message_store.ts";
export { JetStreamOutbox } from "./jetstream_outbox.ts";
export type {
  JetStreamOutboxOptions,
  JetStreamOutboxStats,
} from "./jetstream_outbox_types.ts";
export type {
  Enqueued,
  OutboxDestination,
  OutboxEventMap,
  OutboxRecord,
  OutboxRetryDetail,
  OutboxState,
  OutboxStats,
} from "./kv_outbox_types.ts";

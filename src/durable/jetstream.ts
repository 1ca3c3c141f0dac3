/**
 * Durable delivery on a NATS JetStream cluster, for receivers that scale
 * out: {@linkcode JetStreamMessageStore} is a receiver's `store` that
 * publishes each HL7 message to a replicated stream before the ACK goes
 * out, answers resends from the stream, and dispatches from a durable pull
 * consumer that the receivers of a group share.
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

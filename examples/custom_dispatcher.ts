/**
 * Writing a message dispatcher: a DemoDispatcher that
 * accepts every HL7 message, behind a receiver on a free port.
 *
 *     deno run -P examples/custom_dispatcher.ts
 *
 * `-P` grants the permissions deno.json declares for the examples.
 *
 * @module
 */

import { Ack, Client, type DispatcherObject, Receiver } from "@x/mllp";
import {
  reportMissingPermission,
  SAMPLE_ADT_A01,
  setupLogging,
} from "./_sample.ts";

reportMissingPermission();

const DemoDispatcher: DispatcherObject = {
  dispatch(message) {
    // Put your message handling logic here.
    if (message.kind === "hl7") return Ack.forMessage(message, "AA");
  },
};

setupLogging("debug");

await using receiver = await Receiver.start({
  port: 0,
  hostname: "127.0.0.1",
  dispatcher: DemoDispatcher,
});
await using client = await Client.connect("127.0.0.1", receiver.port);

const result = await client.send(SAMPLE_ADT_A01);
if (result.outcome === "accept") {
  console.log(result.outcome, result.ack.code, JSON.stringify(result.ack.text));
}

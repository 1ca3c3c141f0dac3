/**
 * Non-HL7 over MLLP: an ExpandedDemoDispatcher that accepts
 * HL7 and answers any other payload with "Got the BLOB".
 *
 *     deno run -P examples/non_hl7.ts
 *
 * `-P` grants the permissions deno.json declares for the examples.
 *
 * @module
 */

import { Ack, Client, type DispatcherObject, Receiver } from "@x/mllp";
import { reportMissingPermission, setupLogging } from "./_sample.ts";

reportMissingPermission();

const ExpandedDemoDispatcher: DispatcherObject = {
  dispatch(message) {
    if (message.kind === "hl7") {
      // Your HL7 handling logic here.
      return Ack.forMessage(message, "AA");
    }
    // Your handling logic for other payloads here.
    return "Got the BLOB";
  },
};

setupLogging("debug");

await using receiver = await Receiver.start({
  port: 0,
  hostname: "127.0.0.1",
  dispatcher: ExpandedDemoDispatcher,
});
await using client = await Client.connect("localhost", receiver.port);

const result = await client.send("Hip hip hurray");
if (result.outcome === "reply") {
  console.log({ ok: result.ok, reply: result.text });
}

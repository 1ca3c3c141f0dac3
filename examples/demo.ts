/**
 * `deno task demo`: the first walkthrough in one run. It starts a
 * receiver with the EchoDispatcher on a free port, sends the sample
 * ADT^A01 with a client, prints the typed ACK result, and stops. Log
 * lines go to stderr, the result to stdout.
 *
 *     deno task demo
 *     deno run -P examples/demo.ts
 *
 * `-P` grants the permissions deno.json declares for the examples.
 *
 * @module
 */

import { Client, EchoDispatcher, Receiver } from "@x/mllp";
import {
  reportMissingPermission,
  SAMPLE_ADT_A01,
  setupLogging,
} from "./_sample.ts";

reportMissingPermission();

setupLogging("debug");

const receiver = await Receiver.start({
  port: 0,
  hostname: "127.0.0.1",
  dispatcher: EchoDispatcher,
});
const client = await Client.connect("localhost", receiver.port);

const result = await client.send(SAMPLE_ADT_A01);
if (result.outcome === "reply") {
  console.log("Reply:", result.text);
} else if (result.outcome === "not_ack") {
  console.log("Not an ACK:", result.reason);
} else if (result.outcome === "silent") {
  console.log("No acknowledgment; for this MSH-15/16 that means", result.means);
} else {
  console.log({
    ok: result.ok,
    outcome: result.outcome,
    code: result.ack.code,
    messageControlId: result.ack.messageControlId,
    text: result.ack.text,
  });
}

await client.close();
await Receiver.stop(receiver.port);

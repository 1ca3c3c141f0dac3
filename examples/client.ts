/**
 * Sends the sample ADT^A01 to a receiver and prints the typed
 * result. Start `examples/receiver.ts` first.
 *
 *     deno run -P examples/client.ts [--host localhost] [--port 2575]
 *
 * `-P` grants the permissions deno.json declares for the examples.
 *
 * @module
 */

import { Client } from "@x/mllp";
import { parseArgs } from "@std/cli/parse-args";
import {
  reportMissingPermission,
  SAMPLE_ADT_A01,
  setupLogging,
} from "./_sample.ts";

reportMissingPermission();

const flags: { host: string; port: string } = parseArgs(Deno.args, {
  string: ["host", "port"],
  default: { host: "localhost", port: "2575" },
});

setupLogging("info");

await using client = await Client.connect(flags.host, Number(flags.port));
const result = await client.send(SAMPLE_ADT_A01);

switch (result.outcome) {
  case "accept":
  case "error":
  case "reject":
    console.log(result.outcome, result.ack.code, result.ack.text);
    break;
  case "mismatch":
    console.log("ACK for another message:", result.ack.messageControlId);
    break;
  case "not_ack":
    console.log("Not an ACK:", result.reason);
    break;
  case "reply":
    console.log("Reply:", result.text);
}

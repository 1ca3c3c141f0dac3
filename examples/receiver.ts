/**
 * An MLLP receiver with the EchoDispatcher, running until Ctrl-C.
 *
 *     deno run -A examples/receiver.ts [--port 2575] [--hostname 0.0.0.0]
 *
 * @module
 */

import { EchoDispatcher, Receiver } from "@x/mllp";
import { parseArgs } from "@std/cli/parse-args";
import { setupLogging } from "./_sample.ts";

const flags: { port: string; hostname: string } = parseArgs(Deno.args, {
  string: ["port", "hostname"],
  default: { port: "2575", hostname: "0.0.0.0" },
});

await setupLogging("info");

const stop = new AbortController();
Deno.addSignalListener("SIGINT", () => stop.abort());

const receiver = await Receiver.start({
  port: Number(flags.port),
  hostname: flags.hostname,
  dispatcher: EchoDispatcher,
  signal: stop.signal,
});
console.log(`Receiver on port ${receiver.port}; press Ctrl-C to stop.`);

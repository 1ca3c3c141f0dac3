/**
 * An MLLP receiver with the EchoDispatcher, running until Ctrl-C.
 *
 *     deno run -P examples/receiver.ts [--port 2575] [--hostname 0.0.0.0]
 *
 * `-P` grants the permissions deno.json declares for the examples. Without
 * `--hostname` it listens on 127.0.0.1: only this machine can connect;
 * `--hostname 0.0.0.0` accepts other hosts (unencrypted: see
 * examples/tls_receiver.ts).
 *
 * @module
 */

import { EchoDispatcher, Receiver } from "@x/mllp";
import { parseArgs } from "@std/cli/parse-args";
import { log, reportMissingPermission, setupLogging } from "./_sample.ts";

reportMissingPermission();

const flags: { port: string; hostname?: string } = parseArgs(Deno.args, {
  string: ["port", "hostname"],
  default: { port: "2575" },
});

setupLogging("info");

const stop = new AbortController();
Deno.addSignalListener("SIGINT", () => stop.abort());

const receiver = await Receiver.start({
  port: Number(flags.port),
  hostname: flags.hostname,
  dispatcher: EchoDispatcher,
  signal: stop.signal,
});
log.info("Receiver on port {port}; press Ctrl-C to stop", {
  port: receiver.port,
});

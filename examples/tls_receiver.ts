/**
 * The TLS receiver: the EchoDispatcher over TLS with the
 * test certificates in `tls/`, running until Ctrl-C.
 *
 *     deno run -P examples/tls_receiver.ts [--port 8154] [--hostname 0.0.0.0]
 *       [--verify-peer] [--allowed-clients client-1,10.0.0.0/8]
 *
 * `-P` grants the permissions deno.json declares for the examples. Over
 * TLS it listens on every interface (0.0.0.0) unless `--hostname` names
 * an address.
 *
 * `--verify-peer` requires a client certificate signed by the test root CA
 * ("Using client certificates"). `--allowed-clients` takes a
 * comma-separated list: IP addresses, CIDR ranges and host names, or with
 * `--verify-peer` certificate names ("Using client restrictions").
 *
 * The keys in `tls/` are public: never use them outside tests.
 *
 * @module
 */

import { EchoDispatcher, Receiver } from "@x/mllp";
import { parseArgs } from "@std/cli/parse-args";
import { log, reportMissingPermission, setupLogging } from "./_sample.ts";

reportMissingPermission();

const flags: {
  port: string;
  hostname?: string;
  "verify-peer": boolean;
  "allowed-clients"?: string;
} = parseArgs(Deno.args, {
  string: ["port", "hostname", "allowed-clients"],
  boolean: ["verify-peer"],
  default: { port: "8154" },
});

/** Reads a PEM file of the test PKI, wherever the example is run from. */
function testPki(path: string): Promise<string> {
  return Deno.readTextFile(new URL(`../tls/${path}`, import.meta.url));
}

setupLogging("info");

const stop = new AbortController();
Deno.addSignalListener("SIGINT", () => stop.abort());

const receiver = await Receiver.start({
  port: Number(flags.port),
  hostname: flags.hostname,
  dispatcher: EchoDispatcher,
  tls: {
    cert: await testPki("server/server_certificate.pem"),
    key: await testPki("server/private_key.pem"),
    ca: await testPki("root-ca/ca_certificate.pem"),
    verifyPeer: flags["verify-peer"],
  },
  allowedClients: flags["allowed-clients"]?.split(","),
  signal: stop.signal,
});
log.info("Receiver on port {port}; press Ctrl-C to stop", {
  port: receiver.port,
});

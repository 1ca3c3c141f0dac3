/**
 * The TLS client: sends the sample ADT^A01 over TLS and
 * prints the typed result. Start `examples/tls_receiver.ts` first.
 *
 *     deno run -P examples/tls_client.ts [--host localhost] [--port 8154]
 *       [--ca FILE] [--cert FILE --key FILE] [--servername NAME]
 *
 * `-P` grants the permissions deno.json declares for the examples (read
 * access to `tls/` only: with certificates elsewhere, add
 * `--allow-read=FILE`).
 *
 * `--ca` defaults to the test root CA in `tls/`; there is no client
 * certificate unless `--cert` and `--key` name one, such as
 * `tls/client/client_certificate.pem` and `tls/client/private_key.pem`.
 * `--servername` is the name the receiver's certificate must carry when it
 * is not `--host`.
 *
 * @module
 */

import { Client, ClientError, TlsHandshakeError } from "@x/mllp";
import { parseArgs } from "@std/cli/parse-args";
import {
  reportMissingPermission,
  SAMPLE_ADT_A01,
  setupLogging,
} from "./_sample.ts";

reportMissingPermission();

const flags: {
  host: string;
  port: string;
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
} = parseArgs(Deno.args, {
  string: ["host", "port", "ca", "cert", "key", "servername"],
  default: { host: "localhost", port: "8154" },
});

setupLogging("info");

try {
  await using client = await Client.connect(flags.host, Number(flags.port), {
    tls: {
      // PEM text or paths; a path given on the command line is read
      // relative to the working directory.
      caCerts: flags.ca ?? await Deno.readTextFile(
        new URL("../tls/root-ca/ca_certificate.pem", import.meta.url),
      ),
      cert: flags.cert,
      key: flags.key,
      serverName: flags.servername,
    },
  });
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
} catch (error) {
  if (!(error instanceof ClientError)) throw error;
  // A TlsHandshakeError comes from connect or, with TLS 1.3, from the first
  // send (a receiver judges the client certificate after the client's
  // side of the handshake is done). It says which side refused and why.
  const why = error instanceof TlsHandshakeError
    ? `${error.refusedBy}: ${error.failure}`
    : error.reason;
  console.error(`${error.message} (${why})`);
  Deno.exitCode = 1;
}

// node-hl7-client's Client and Connection (waitAck: the default), one per
// connection: sendMessage() the payload, parsed once into its Message, and
// wait for the connection's reply handler. For benchmarks only:
// `deno task bench` runs it under Node.

import { createRequire } from "node:module";
import { runClient } from "./_client_child.mjs";

// Loaded with require() (the package ships CommonJS too) so that Deno's
// type checker, which also reads this directory, never resolves it.
const { Client, Message } = createRequire(import.meta.url)("node-hl7-client");

await runClient(async ({ hostname, port, payload, ca, servername }) => {
  const message = new Message({ text: payload });
  const client = new Client({
    host: hostname,
    version: message.get("MSH.12").toString(),
    ...(ca.length > 0 || servername
      ? { tls: { ca, servername, rejectUnauthorized: true } }
      : {}),
  });
  let replied;
  const connection = client.createConnection({ port }, (reply) => {
    const resolve = replied;
    replied = undefined;
    resolve?.(reply);
  });
  await new Promise((resolve, reject) => {
    connection.once("connect", resolve);
    connection.once("client.error", reject);
  });
  return {
    send: () =>
      new Promise((resolve, reject) => {
        replied = resolve;
        connection.sendMessage(message).catch(reject);
      }),
    close: () => connection.close(),
  };
}, { tls: true });

// @medplum/hl7's Hl7Client (keepAlive), one per connection: sendAndWait()
// the payload, parsed once into an Hl7Message. For benchmarks only:
// `deno task bench` runs it under Node.

import { createRequire } from "node:module";
import { runClient } from "./_client_child.mjs";

// Loaded with require() (the packages ship CommonJS too) so that Deno's
// type checker, which also reads this directory, never resolves them.
const require = createRequire(import.meta.url);
const { Hl7Client } = require("@medplum/hl7");
const { Hl7Message } = require("@medplum/core");

await runClient(async ({ hostname, port, payload }) => {
  const message = Hl7Message.parse(payload);
  const client = new Hl7Client({ host: hostname, port, keepAlive: true });
  await client.connect();
  return {
    send: () => client.sendAndWait(message),
    close: () => client.close(),
  };
});

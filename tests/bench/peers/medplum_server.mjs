// An MLLP server built on @medplum/hl7 (Hl7Server), answering every message
// with the ACK that Hl7Message.buildAck() makes: the library's own way to
// acknowledge. For benchmarks only: `deno task bench` starts it under Node.

import { createRequire } from "node:module";
import { announce, parseArgs } from "./_child.mjs";

// Loaded with require() (the package ships CommonJS too) so that Deno's
// type checker, which also reads this directory, never resolves it.
const { Hl7Server } = createRequire(import.meta.url)("@medplum/hl7");

const { port } = parseArgs();
const server = new Hl7Server((connection) => {
  connection.addEventListener("message", (event) => {
    connection.send(event.message.buildAck());
  });
  connection.addEventListener("error", () => {
    // A client that goes away mid-message; nothing to do.
  });
});
// Hl7Server.start listens on every interface; it takes no host name.
await server.start(port);
announce(
  { hostname: "127.0.0.1", port: server.server.address().port },
  () => server.stop({ forceDrainTimeoutMs: 1000 }),
);

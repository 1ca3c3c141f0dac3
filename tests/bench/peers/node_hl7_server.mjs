// An MLLP server built on node-hl7-server (Server.createInbound),
// answering every message with res.sendResponse("AA"): the ACK the
// library builds from the message. For benchmarks only: `deno task bench`
// starts it under Node.

import { createRequire } from "node:module";
import { announce, parseArgs } from "./_child.mjs";

// Loaded with require() (the package ships CommonJS too) so that Deno's
// type checker, which also reads this directory, never resolves it.
const { Server } = createRequire(import.meta.url)("node-hl7-server");

const { port, hostname } = parseArgs();
// node-hl7-server hands its bindAddress to net.Server.listen as
// "hostname", which node:net ignores: it listens on every interface.
const server = new Server({ bindAddress: hostname });
const inbound = server.createInbound({ port }, async (_req, res) => {
  await res.sendResponse("AA");
});
inbound.on("error", () => {
  // A client that goes away mid-message; nothing to do.
});
inbound.on("listen", () => {
  announce(
    { hostname, port: inbound._socket.address().port },
    () => inbound.close(),
  );
});

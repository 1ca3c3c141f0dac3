// An MLLP server built on simple-hl7 (hl7.tcp(), its express-like app),
// answering every message with the ACK the library makes for it
// (res.ack, sent by res.end()). For benchmarks only: `deno task bench`
// starts it under Node.

import { createRequire } from "node:module";
import { announce, parseArgs } from "./_child.mjs";

// Loaded with require() (the package is CommonJS) so that Deno's type
// checker, which also reads this directory, never resolves it.
const hl7 = createRequire(import.meta.url)("simple-hl7");

const { port } = parseArgs();
const app = hl7.tcp();
app.use((_req, res, next) => {
  if (!res) return next(); // a socket error, passed as (err) alone
  res.end();
});
app.use((_error, _req, _res, _next) => {
  // A client that goes away mid-message; nothing to do.
});
// app.start listens on every interface; it takes no host name.
const server = app.start(port);
server.server.on("listening", () => {
  announce(
    { hostname: "127.0.0.1", port: server.server.address().port },
    () => new Promise((resolve) => server.server.close(() => resolve())),
  );
});

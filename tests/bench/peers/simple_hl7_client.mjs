// simple-hl7's TCP client (Server.createTcpClient with keepalive), one per
// connection, sending the payload text and waiting for its callback. For
// benchmarks only: `deno task bench` runs it under Node.

import { createRequire } from "node:module";
import { runClient } from "./_client_child.mjs";

// Loaded with require() (the package is CommonJS) so that Deno's type
// checker, which also reads this directory, never resolves it.
const hl7 = createRequire(import.meta.url)("simple-hl7");

await runClient(async ({ hostname, port, payload }) => {
  const client = hl7.Server.createTcpClient({
    host: hostname,
    port,
    keepalive: true,
  });
  await new Promise((resolve, reject) =>
    client.connect((error) => error ? reject(error) : resolve())
  );
  return {
    send: () =>
      new Promise((resolve, reject) =>
        client.send(
          payload,
          (error, ack) => error ? reject(error) : resolve(ack),
        )
      ),
    close: () => client.close(),
  };
});

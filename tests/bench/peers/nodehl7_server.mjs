// An MLLP server built on nodehl7 (MLLPServer). nodehl7 leaves the reply to
// the handler, so this one builds an ACK from the message's MSH segment the
// way most receivers do (MSH-3/4 and MSH-5/6 swapped, MSA-2 the message's
// MSH-10). For benchmarks only: `deno task bench` starts it under Node.

import { createRequire } from "node:module";
import { announce, parseArgs } from "./_child.mjs";

// nodehl7's ES module build loads its MLLP part with require(), which
// Node's ESM loader lacks; its CommonJS build works (and Deno's type
// checker, which also reads this directory, never resolves it).
const { MLLPServer } = createRequire(import.meta.url)("nodehl7");

let sequence = 0;

/** An AA acknowledgment for an HL7 message, as text. */
function ackFor(message) {
  const text = message.toString("utf8");
  const end = text.indexOf("\r");
  const msh = (end === -1 ? text : text.slice(0, end)).split(text[3]);
  const field = text[3];
  const type = (msh[8] ?? "").split(msh[1][0]);
  const now = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
  const header = [
    "MSH",
    msh[1],
    msh[4] ?? "",
    msh[5] ?? "",
    msh[2] ?? "",
    msh[3] ?? "",
    now,
    "",
    type[1] ? `ACK${msh[1][0]}${type[1]}${msh[1][0]}ACK` : "ACK",
    `N${++sequence}`,
    msh[10] || "P",
    msh[11] || "2.5",
  ];
  return `${header.join(field)}\rMSA${field}AA${field}${msh[9] ?? ""}\r`;
}

const { port, hostname } = parseArgs();
const server = new MLLPServer((message, reply) => reply(ackFor(message)));
server.on("error", () => {
  // A client that goes away mid-message; nothing to do.
});
server.listen(port, hostname, () => {
  const address = server.address();
  announce(
    { hostname, port: address.port },
    () => new Promise((resolve) => server.close(() => resolve())),
  );
});

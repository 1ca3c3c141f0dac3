/**
 * Enhanced acknowledgment mode and MLLP release 2, both sides on free
 * ports:
 *
 * 1. A message with MSH-15 `AL` and MSH-16 `AL`: the receiver commits it
 *    (`CA`), then sends the dispatcher's `AA` on the same connection; the
 *    client's `send` resolves on the `CA` and `applicationAck` brings the
 *    `AA`.
 * 2. The same with `applicationAcks` as a function: the `AA` goes back on
 *    another connection, to the sender's own receiver.
 * 3. MLLP release 2 on both sides: a commit frame (`0x06`) before each
 *    reply.
 *
 *     deno run -P examples/ack_modes.ts
 *
 * `-P` grants the permissions deno.json declares for the examples.
 *
 * @module
 */

import { Ack, Client, Receiver } from "@x/mllp";
import { reportMissingPermission } from "./_sample.ts";

reportMissingPermission();

const message = (id: string) =>
  `MSH|^~\\&|LAB|NORTHLAB|EHR|GENHOSP|20240101120000||ORU^R01^ORU_R01|${id}|P|2.5.1|||AL|AL\rOBX|1|NM|GLU||5.4\r`;

// 1. Application ACK on the same connection.
{
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (m) => Ack.forMessage(m, "AA", { text: "Filed" }),
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  const result = await client.send(message("EX1"));
  if (result.outcome === "reply" || result.outcome === "silent") {
    throw new Error("Expected an ACK");
  }
  console.log("commit:", result.outcome, "code" in result ? result.code : "");
  const app = await result.applicationAck;
  console.log("application:", app?.code, app?.text);
}

// 2. Application ACK on a later connection, to the sender's own receiver.
{
  const gotAck = Promise.withResolvers<string>();
  await using senderSide = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (m) => {
      gotAck.resolve(m.text.split("\r")[1]); // the MSA segment
      return Ack.forMessage(m, "AA");
    },
  });
  await using back = await Client.connect("127.0.0.1", senderSide.port);
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    dispatcher: (m) => Ack.forMessage(m, "AA", { text: "Filed" }),
    applicationAcks: async (ack) => {
      await back.send(ack.toString());
    },
  });
  await using client = await Client.connect("127.0.0.1", receiver.port);
  const result = await client.send(message("EX2"));
  console.log("commit:", "code" in result ? result.code : result.outcome);
  console.log("application ACK sent back:", await gotAck.promise);
}

// 3. MLLP release 2: commit frames on both sides.
{
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    mllpRelease: 2,
    dispatcher: (m) => m.kind === "hl7" ? Ack.forMessage(m, "AA") : "pong",
  });
  await using client = await Client.connect("127.0.0.1", receiver.port, {
    mllpRelease: 2,
    commitTimeout: 2000,
    commitRetries: 3,
  });
  const result = await client.send("ping");
  console.log("release 2:", result.outcome === "reply" ? result.text : "");
}

import {
  assertEquals,
  assertMatch,
  assertNotEquals,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import {
  Ack,
  ACK_CODES,
  type AckCode,
  type AckResult,
  escapeText,
  formatTimestamp,
  isAckCode,
  newControlId,
  unescapeText,
  verifyAck,
} from "../../src/hl7/ack.ts";
import { HeaderError } from "../../src/errors.ts";
import {
  decodeText,
  type Hl7Message,
  type Hl7Separators,
  type Message,
  readHeader,
  readMessage,
} from "../../src/hl7/message.ts";
import { bytes, fixtureBytes, fixtureText, text } from "../_helpers.ts";

const STANDARD: Hl7Separators = {
  field: "|",
  component: "^",
  repetition: "~",
  escape: "\\",
  subcomponent: "&",
  truncation: "",
};

const WIKI_MSH =
  "MSH|^~\\&|MegaReg|XYZHospC|SuperOE|XYZImgCtr|20060529090131-0500||ADT^A01^ADT_A01|01052901|P|2.5";

/** The segments of an HL7 text, without the empty one after a final `\r`. */
function segments(hl7: string): string[] {
  const parts = hl7.split("\r");
  if (parts.at(-1) === "") parts.pop();
  return parts;
}

/** MSH fields such that `msh(hl7)[n]` is MSH-n (index 0 is "MSH"). */
function msh(hl7: string, field = "|"): string[] {
  const parts = segments(hl7)[0].split(field);
  return ["MSH", field, ...parts.slice(1)];
}

/** Narrows a message to HL7, failing the test otherwise. */
function asHl7(message: Message): Hl7Message {
  if (message.kind !== "hl7") throw new Error("Expected an HL7 message");
  return message;
}

/**
 * Reads an HL7 DTM with seconds and offset back into a Date, independently
 * of formatTimestamp.
 */
function parseStamp(stamp: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([+-]\d{2})(\d{2})$/
    .exec(stamp);
  if (!m) throw new Error(`Not an HL7 timestamp: ${stamp}`);
  return new Date(
    `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[7]}:${m[8]}`,
  );
}

/** An ACK text with the given code and MSA-2, in the seed's shape. */
function reply(code: string, controlId: string, extra = ""): string {
  return `MSH|^~\\&|SuperOE|XYZImgCtr|MegaReg|XYZHospC|20060529090131-0500||ACK^A01^ACK|R1|P|2.5\rMSA|${code}|${controlId}${extra}\r`;
}

// --- codes, ids, timestamps ------------------------------------------------

Deno.test("ACK_CODES and isAckCode() know the six codes", () => {
  assertEquals([...ACK_CODES], ["AA", "AE", "AR", "CA", "CE", "CR"]);
  for (const code of ACK_CODES) assertEquals(isAckCode(code), true, code);
  for (const code of ["", "aa", "AA ", "OK", "ACK", "NE", "AL", "A"]) {
    assertEquals(isAckCode(code), false, code);
  }
});

Deno.test("newControlId() is short, upper-case and unique", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 20000; i++) {
    const id = newControlId();
    assertMatch(id, /^M[0-9A-Z]{8,19}$/);
    assertEquals(id.length <= 20, true, id);
    ids.add(id);
  }
  assertEquals(ids.size, 20000);
});

Deno.test("formatTimestamp() writes local time with its UTC offset", () => {
  const date = new Date(2024, 0, 2, 3, 4, 5);
  const stamp = formatTimestamp(date);
  assertMatch(stamp, /^20240102030405[+-]\d{4}$/);
  assertEquals(parseStamp(stamp).getTime(), date.getTime());
  const other = new Date(1999, 11, 31, 23, 59, 59);
  assertEquals(formatTimestamp(other).slice(0, 14), "19991231235959");
  assertEquals(parseStamp(formatTimestamp(other)).getTime(), other.getTime());
  // Milliseconds are dropped, not rounded.
  const ms = new Date(2024, 5, 6, 7, 8, 9, 999);
  assertEquals(formatTimestamp(ms).slice(0, 14), "20240606070809");
});

// --- Ack.forMessage --------------------------------------------------------

Deno.test("Ack.forMessage() follows the seed rules for the wikipedia sample", async () => {
  const message = readMessage(await fixtureBytes("adt_a01_wikipedia.hl7"));
  const expected = await fixtureText("ack_aa_for_wikipedia.hl7");
  const before = Date.now();
  const ack = Ack.forMessage(message, "AA");
  const after = Date.now();

  const got = segments(ack.toString());
  const want = segments(expected);
  assertEquals(got.length, 2);
  assertEquals(want.length, 2);
  assertEquals(ack.toString().endsWith("\r"), true);

  const gotMsh = msh(ack.toString());
  const wantMsh = msh(expected);
  assertEquals(gotMsh.length, wantMsh.length);
  assertEquals(gotMsh.length, 13);
  for (let n = 1; n < wantMsh.length; n++) {
    if (n === 7 || n === 10) continue;
    assertEquals(gotMsh[n], wantMsh[n], `MSH-${n}`);
  }
  assertEquals(gotMsh.slice(3, 7), [
    "SuperOE",
    "XYZImgCtr",
    "MegaReg",
    "XYZHospC",
  ]);
  assertEquals(gotMsh[9], "ACK^A01^ACK");
  assertEquals(got[1], want[1]);
  assertEquals(got[1], "MSA|AA|01052901");

  // MSH-7 is now; MSH-10 is fresh, not the message's.
  assertMatch(gotMsh[7], /^\d{14}[+-]\d{4}$/);
  const sent = parseStamp(gotMsh[7]).getTime();
  assertEquals(sent >= Math.floor(before / 1000) * 1000 && sent <= after, true);
  assertNotEquals(gotMsh[10], "01052901");
  assertEquals(gotMsh[10].length > 0 && gotMsh[10].length <= 20, true);

  assertEquals(ack.code, "AA");
  assertEquals(ack.messageControlId, "01052901");
  assertEquals(ack.text, "");
  assertEquals(ack.accepted, true);
  assertEquals(ack.header.sendingApplication, "SuperOE");
  assertEquals(ack.header.sendingFacility, "XYZImgCtr");
  assertEquals(ack.header.receivingApplication, "MegaReg");
  assertEquals(ack.header.receivingFacility, "XYZHospC");
  assertEquals(ack.header.messageType, "ACK^A01^ACK");
  assertEquals(ack.header.controlId, gotMsh[10]);
  assertEquals(ack.header.dateTime, gotMsh[7]);
  assertEquals(ack.toBytes(), new TextEncoder().encode(ack.toString()));
});

Deno.test("Ack.forMessage() gives every ACK a fresh control id", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const ack = Ack.forMessage(WIKI_MSH, "AA");
    const id = ack.header.controlId;
    assertEquals(id.length > 0 && id.length <= 20, true, id);
    assertEquals(msh(ack.toString())[10], id);
    ids.add(id);
  }
  assertEquals(ids.size, 5000);
});

Deno.test("Ack.forMessage() accepts the message as Message, text or bytes", async () => {
  const raw = await fixtureBytes("adt_a01_wikipedia.hl7");
  const options = {
    controlId: "ACK-1",
    dateTime: new Date(2024, 0, 2, 3, 4, 5),
  };
  const fromMessage = Ack.forMessage(readMessage(raw), "AE", options);
  const fromBytes = Ack.forMessage(raw, "AE", options);
  const fromText = Ack.forMessage(
    await fixtureText("adt_a01_wikipedia.hl7"),
    "AE",
    options,
  );
  const stamp = formatTimestamp(options.dateTime);
  const expected =
    `MSH|^~\\&|SuperOE|XYZImgCtr|MegaReg|XYZHospC|${stamp}||ACK^A01^ACK|ACK-1|P|2.5\rMSA|AE|01052901\r`;
  assertEquals(fromMessage.toString(), expected);
  assertEquals(fromBytes.toString(), expected);
  assertEquals(fromText.toString(), expected);
  assertEquals(fromMessage.accepted, false);
});

Deno.test("Ack.forMessage() keeps the A08 fixture's five encoding characters", async () => {
  const ack = Ack.forMessage(
    await fixtureBytes("adt_a08_custom_delims.hl7"),
    "CA",
    { controlId: "K1", dateTime: new Date(2026, 10, 27, 10, 10, 11) },
  );
  const stamp = formatTimestamp(new Date(2026, 10, 27, 10, 10, 11));
  assertEquals(
    ack.toString(),
    `MSH|^~\\&#|HUB|REGION|REG|CLINIC7|${stamp}||ACK^A08^ACK|K1|P|2.7\rMSA|CA|CTRL-A08-0007\r`,
  );
  assertEquals(ack.header.encodingCharacters, "^~\\&#");
  assertEquals(ack.header.separators.truncation, "#");
  assertEquals(ack.header.versionId, "2.7");
  assertEquals(ack.code, "CA");
  assertEquals(ack.accepted, true);
});

Deno.test("Ack.forMessage() writes the ACK with * fields and : components", () => {
  const date = new Date(2024, 2, 4, 5, 6, 7);
  const ack = Ack.forMessage(
    "MSH*:~\\&*SA*SF*RA*RF*20240101120000**ORM:O01:ORM_O01*C-77*T*2.3.1\rPID*1",
    "AE",
    { controlId: "A-1", dateTime: date, text: "bad*field:here" },
  );
  assertEquals(
    ack.toString(),
    `MSH*:~\\&*RA*RF*SA*SF*${
      formatTimestamp(date)
    }**ACK:O01:ACK*A-1*T*2.3.1\r` +
      "MSA*AE*C-77*bad\\F\\field\\S\\here\r",
  );
  assertEquals(ack.header.separators.field, "*");
  assertEquals(ack.header.separators.component, ":");
  assertEquals(ack.header.messageType, "ACK:O01:ACK");
  assertEquals(ack.header.triggerEvent, "O01");
  assertEquals(ack.text, "bad*field:here");
  const parsed = Ack.parse(ack.toString());
  assertEquals(parsed.code, "AE");
  assertEquals(parsed.messageControlId, "C-77");
  assertEquals(parsed.text, "bad*field:here");
});

Deno.test("Ack.forMessage() copies version and processing id, with defaults", () => {
  const copied = msh(
    Ack.forMessage("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|D^T|2.3^DEU", "AA")
      .toString(),
  );
  assertEquals([copied[11], copied[12]], ["D^T", "2.3^DEU"]);

  const defaults = Ack.forMessage("MSH|^~\\&|A|B|C|D|1||ADT|X", "AA");
  const fields = msh(defaults.toString());
  assertEquals([fields[9], fields[11], fields[12]], ["ACK", "P", "2.5"]);
  assertEquals(defaults.header.triggerEvent, "");
  assertEquals(defaults.messageControlId, "X");
});

Deno.test("Ack.forMessage() copies MSH-18 and toBytes() encodes in that charset", async () => {
  const message = readMessage(await fixtureBytes("adt_a04_latin1.hl7"));
  const date = new Date(2026, 10, 27, 11, 11, 12);
  const ack = Ack.forMessage(message, "AA", {
    text: "Müller übernommen",
    controlId: "L-ACK",
    dateTime: date,
  });
  const hl7 =
    `MSH|^~\\&|HUB|REGION|REG|KLINIK|${
      formatTimestamp(date)
    }||ACK^A04^ACK|L-ACK|P|2.5||||||8859/1\r` +
    "MSA|AA|LAT1-0001|Müller übernommen\r";
  assertEquals(ack.toString(), hl7);
  assertEquals(msh(hl7)[18], "8859/1");
  assertEquals(ack.header.characterSet, "8859/1");

  const encoded = ack.toBytes();
  assertEquals(encoded.length, hl7.length);
  const u = hl7.indexOf("ü");
  assertEquals(encoded[u], 0xfc);
  assertEquals(encoded[hl7.indexOf("ü", u + 1)], 0xfc);
  assertEquals(encoded.includes(0xc3), false);
  assertEquals(decodeText(encoded, "latin1"), hl7);

  // The peer reads it back with MSH-18.
  const parsed = Ack.parse(encoded);
  assertEquals(parsed.text, "Müller übernommen");
  assertEquals(parsed.header.characterSet, "8859/1");
  assertEquals(verifyAck(message.header!, encoded).outcome, "accept");
});

Deno.test("Ack.forMessage() copies MSH-18 UNICODE UTF-8 and encodes UTF-8", async () => {
  const message = readMessage(await fixtureBytes("adt_a04_utf8.hl7"));
  const ack = Ack.forMessage(message, "AA", { text: "受信しました" });
  assertEquals(msh(ack.toString())[18], "UNICODE UTF-8");
  assertEquals(msh(ack.toString()).length, 19);
  assertEquals(ack.header.characterSet, "UNICODE UTF-8");
  assertEquals(segments(ack.toString())[1], "MSA|AA|UTF8-0001|受信しました");
  assertEquals(ack.toBytes(), new TextEncoder().encode(ack.toString()));
  assertEquals(text(ack.toBytes()), ack.toString());
  assertEquals(Ack.parse(ack.toBytes()).text, "受信しました");
});

Deno.test("Ack.forMessage() copies only the first MSH-18 repetition", () => {
  const ack = Ack.forMessage(
    "MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||||DEU|8859/1~UNICODE UTF-8",
    "AA",
    { text: "ß" },
  );
  assertEquals(msh(ack.toString())[18], "8859/1");
  assertEquals(ack.toBytes().at(-2), 0xdf);
});

Deno.test("Ack.forMessage() escapes MSA-3 and Ack.parse() unescapes it", () => {
  const plain = "a|b^c~d\\e&f#g";
  const ack = Ack.forMessage(WIKI_MSH, "AE", { text: plain });
  assertEquals(
    segments(ack.toString())[1],
    "MSA|AE|01052901|a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f#g",
  );
  assertEquals(ack.text, plain);
  assertEquals(Ack.parse(ack.toString()).text, plain);

  // With a truncation character, it is escaped too.
  const v27 = Ack.forMessage(
    "MSH|^~\\&#|A|B|C|D|1||ADT^A08|T7|P|2.7",
    "AE",
    { text: "cut#here|x" },
  );
  assertEquals(segments(v27.toString())[1], "MSA|AE|T7|cut\\P\\here\\F\\x");
  assertEquals(Ack.parse(v27.toString()).text, "cut#here|x");

  // Line breaks cannot be in a field: they become spaces, in both views.
  const lines = Ack.forMessage(WIKI_MSH, "AE", { text: "one\rtwo\nthree" });
  assertEquals(segments(lines.toString()).length, 2);
  assertEquals(segments(lines.toString())[1], "MSA|AE|01052901|one two three");
  assertEquals(lines.text, "one two three");
  assertEquals(Ack.parse(lines.toString()).text, lines.text);
});

Deno.test("escapeText() and unescapeText() handle separators and leave other escapes", () => {
  assertEquals(escapeText("", STANDARD), "");
  assertEquals(escapeText("plain text", STANDARD), "plain text");
  assertEquals(escapeText("\\", STANDARD), "\\E\\");
  assertEquals(escapeText("a|b", { ...STANDARD, escape: "!" }), "a!F!b");
  assertEquals(escapeText("x#y", { ...STANDARD, truncation: "#" }), "x\\P\\y");
  assertEquals(escapeText("x#y", STANDARD), "x#y");

  assertEquals(
    unescapeText("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", STANDARD),
    "a|b^c&d~e\\f",
  );
  assertEquals(
    unescapeText("\\H\\bold\\N\\ \\X0D\\", STANDARD),
    "\\H\\bold\\N\\ \\X0D\\",
  );
  assertEquals(unescapeText("x\\P\\y", STANDARD), "x\\P\\y");
  assertEquals(
    unescapeText("x\\P\\y", { ...STANDARD, truncation: "#" }),
    "x#y",
  );
  assertEquals(unescapeText("trailing\\", STANDARD), "trailing\\");
  assertEquals(unescapeText("\\F", STANDARD), "\\F");
  const tricky = "\\F\\|\\E\\F\\E\\";
  assertEquals(unescapeText(escapeText(tricky, STANDARD), STANDARD), tricky);
});

Deno.test("Ack.forMessage() honours controlId and dateTime options", () => {
  const date = new Date(2025, 6, 8, 9, 10, 11);
  const ack = Ack.forMessage(WIKI_MSH, "CE", {
    controlId: "MY-ACK-0001",
    dateTime: date,
  });
  const fields = msh(ack.toString());
  assertEquals(fields[10], "MY-ACK-0001");
  assertEquals(fields[7], formatTimestamp(date));
  assertEquals(fields[7].slice(0, 14), "20250708091011");
  assertEquals(ack.header.controlId, "MY-ACK-0001");
  assertEquals(ack.header.dateTime, formatTimestamp(date));
  assertEquals(ack.code, "CE");
});

Deno.test("Ack.forMessage() gives the header that reading its text back gives", async () => {
  const messages = [
    WIKI_MSH,
    "MSH*:~\\&#*A*B*C*D*20240101**ADT:A08*X1*P*2.7",
    "MSH|^~\\&|A|B|C|D|1||ORU^R01|9|T|2.3|||AL|NE||8859/1~UNICODE UTF-8",
    await fixtureText("adt_a01_wikipedia.hl7"),
    await fixtureBytes("adt_a04_latin1.hl7"),
  ];
  for (const message of messages) {
    for (
      const options of [
        {},
        { text: "a|b^c\r\nd" },
        { controlId: "WITH|BAR" },
        { controlId: "WITH\rCR" },
      ]
    ) {
      const ack = Ack.forMessage(message, "AE", options);
      assertEquals(ack.header, readHeader(ack.toString()));
      assertEquals(ack.header, Ack.parse(ack.toBytes()).header);
      assertEquals(ack.encoding, Ack.parse(ack.toString()).encoding);
    }
  }
  const rejected = Ack.forMessage("MSH|", "AA");
  assertEquals(rejected.header, readHeader(rejected.toString()));
});

Deno.test("Ack.forMessage() answers unreadable input with AR whatever the code", () => {
  const date = new Date(2024, 0, 2, 3, 4, 5);
  for (const code of ACK_CODES) {
    for (const input of ["MSH|", bytes("MSH|^^\\&|A")]) {
      const ack = Ack.forMessage(input, code, {
        controlId: "R-1",
        dateTime: date,
      });
      assertEquals(ack.code, "AR", code);
      assertEquals(ack.messageControlId, "");
      assertEquals(ack.accepted, false);
      assertEquals(
        segments(ack.toString())[0],
        `MSH|^~\\&|||||${formatTimestamp(date)}||ACK|R-1|P|2.5`,
      );
    }
  }
  const short = Ack.forMessage("MSH|", "AA");
  assertEquals(
    short.text,
    "Cannot read header: MSH segment is too short (4 characters)",
  );
  assertEquals(
    segments(short.toString())[1],
    "MSA|AR||Cannot read header: MSH segment is too short (4 characters)",
  );
  const withText = Ack.forMessage("MSH|^~\\&&|A", "AA", { text: "Sorry" });
  assertEquals(
    withText.text,
    'Sorry: Cannot read header: invalid encoding characters "^~\\&&"',
  );
  assertEquals(Ack.parse(withText.toString()).text, withText.text);
});

Deno.test("Ack.forMessage() answers non-HL7 input with AR", async () => {
  const reason = "Cannot read message: payload is not HL7";
  const inputs: (string | Uint8Array | Message)[] = [
    "Hip hip hurray",
    await fixtureBytes("not_hl7.txt"),
    readMessage(await fixtureBytes("not_hl7.txt")),
    readMessage(await fixtureBytes("batch_fhs_bhs.hl7")),
    "",
  ];
  for (const input of inputs) {
    const ack = Ack.forMessage(input, "AA");
    assertEquals(ack.code, "AR");
    assertEquals(ack.text, reason);
    assertEquals(ack.messageControlId, "");
    assertEquals(segments(ack.toString())[1], `MSA|AR||${reason}`);
  }
});

// --- Ack.parse -------------------------------------------------------------

Deno.test("Ack.parse() reads the fixture ACK", async () => {
  const hl7 = await fixtureText("ack_aa_for_wikipedia.hl7");
  for (
    const input of [
      hl7,
      await fixtureBytes("ack_aa_for_wikipedia.hl7"),
      readMessage(hl7),
    ]
  ) {
    const ack = Ack.parse(input);
    assertEquals(ack.code, "AA");
    assertEquals(ack.messageControlId, "01052901");
    assertEquals(ack.text, "");
    assertEquals(ack.accepted, true);
    assertEquals(ack.header, readHeader(hl7));
    assertEquals(ack.header.messageType, "ACK^A01^ACK");
    assertEquals(ack.header.sendingApplication, "SuperOE");
    assertEquals(ack.header.dateTime, "20060529090131-0500");
    assertEquals(ack.toString(), hl7);
    assertEquals(ack.toBytes(), new TextEncoder().encode(hl7));
  }
});

Deno.test("Ack.parse() finds MSA after \\n or \\r\\n and with ERR segments", () => {
  const msh = "MSH|^~\\&|R|RF|S|SF|1||ACK^A01^ACK|A9|P|2.5";
  for (const end of ["\r", "\n", "\r\n"]) {
    const ack = Ack.parse(`${msh}${end}MSA|CE|X-1|Full${end}ERR|||207`);
    assertEquals([ack.code, ack.messageControlId, ack.text], [
      "CE",
      "X-1",
      "Full",
    ]);
  }
  // MSA-2 is kept exactly, spaces and all.
  assertEquals(Ack.parse(`${msh}\rMSA|AA| X-1 `).messageControlId, " X-1 ");
  // An MSAX segment is not MSA.
  assertThrows(
    () => Ack.parse(`${msh}\rMSAX|AA|1`),
    TypeError,
    "no MSA segment",
  );
});

Deno.test("Ack.parse() throws TypeError or HeaderError for what is not an ACK", async () => {
  assertThrows(
    () => Ack.parse("Hip hip hurray"),
    TypeError,
    "reply is not HL7",
  );
  assertThrows(
    () => Ack.parse(bytes("Hip hip hurray")),
    TypeError,
    "reply is not HL7",
  );
  assertThrows(
    () => Ack.parse(readMessage("Hip hip hurray")),
    TypeError,
    "reply is not HL7",
  );
  const adt = await fixtureBytes("adt_a01_wikipedia.hl7");
  assertThrows(() => Ack.parse(adt), TypeError, "reply has no MSA segment");
  assertThrows(
    () => Ack.parse(`${WIKI_MSH}\rMSA|OK|01052901`),
    TypeError,
    'MSA-1 "OK" is not an acknowledgment code',
  );
  assertThrows(
    () => Ack.parse(`${WIKI_MSH}\rMSA|aa|01052901`),
    TypeError,
    'MSA-1 "aa"',
  );
  assertThrows(() => Ack.parse(`${WIKI_MSH}\rMSA`), TypeError, 'MSA-1 ""');
  assertThrows(() => Ack.parse("MSH|\rMSA|AA|1"), HeaderError, "too short");
  assertThrows(() => Ack.parse(bytes("MSH|^~\\|A\rMSA|AA|1")), HeaderError);
});

// --- verifyAck -------------------------------------------------------------

Deno.test("verifyAck() tells accept, error and reject apart", () => {
  const sent = readMessage(WIKI_MSH);
  const outcomes: Record<AckCode, [string, boolean]> = {
    AA: ["accept", true],
    CA: ["accept", true],
    AE: ["error", false],
    CE: ["error", false],
    AR: ["reject", false],
    CR: ["reject", false],
  };
  for (const code of ACK_CODES) {
    const ack = Ack.forMessage(sent, code, { text: `code ${code}` });
    const result: AckResult = verifyAck(sent, ack.toString());
    const [outcome, ok] = outcomes[code];
    assertEquals(result.outcome, outcome, code);
    assertEquals(result.ok, ok, code);
    if (result.outcome === "not_ack" || result.outcome === "mismatch") {
      throw new Error(`Unexpected ${result.outcome}`);
    }
    assertEquals(result.code, code);
    assertEquals(result.ack.code, code);
    assertEquals(result.ack.messageControlId, "01052901");
    assertEquals(result.ack.text, `code ${code}`);
  }
});

Deno.test("verifyAck() reports a mismatch unless MSA-2 equals MSH-10 exactly", () => {
  const cases: [string, string][] = [
    ["0105", "01052901"],
    ["01052901", "0105"],
    ["01052901", "2901"],
    ["01052901", "x01052901"],
    ["01052901", "01052901 "],
    ["01052901", ""],
    ["", "01052901"],
    ["abc", "ABC"],
  ];
  for (const [expected, msa2] of cases) {
    const result = verifyAck(expected, reply("AA", msa2));
    assertEquals(result.outcome, "mismatch", `${expected} vs ${msa2}`);
    assertEquals(result.ok, false);
    if (result.outcome !== "mismatch") throw new Error("not a mismatch");
    assertEquals(result.expected, expected);
    assertEquals(result.code, "AA");
    assertEquals(result.ack.messageControlId, msa2);
  }
  // A mismatching reject is still a mismatch, and carries its code.
  const rejected = verifyAck("0105", reply("AR", "01052901"));
  assertEquals(rejected.outcome, "mismatch");
  if (rejected.outcome !== "mismatch") throw new Error("not a mismatch");
  assertEquals(rejected.code, "AR");
  // The same ids match.
  assertEquals(verifyAck("0105", reply("AA", "0105")).outcome, "accept");
  assertEquals(
    verifyAck("01052901", reply("AA", "01052901")).outcome,
    "accept",
  );
});

Deno.test("verifyAck() reports not_ack for replies that are not ACKs", async () => {
  const sent = readMessage(WIKI_MSH);
  const blob = bytes("Got the BLOB");
  const notHl7 = verifyAck(sent, blob);
  assertEquals(notHl7.outcome, "not_ack");
  assertEquals(notHl7.ok, false);
  if (notHl7.outcome !== "not_ack") throw new Error("not not_ack");
  assertStrictEquals(notHl7.reply, blob);
  assertEquals(notHl7.reason, "Cannot read ACK: reply is not HL7");

  const fromText = verifyAck(sent, "Got the BLOB");
  if (fromText.outcome !== "not_ack") throw new Error("not not_ack");
  assertEquals(fromText.reply, blob);

  const adt = readMessage(await fixtureBytes("adt_a01_wikipedia.hl7"));
  const noMsa = verifyAck(sent, adt);
  if (noMsa.outcome !== "not_ack") throw new Error("not not_ack");
  assertEquals(noMsa.reason, "Cannot read ACK: reply has no MSA segment");
  assertStrictEquals(noMsa.reply, adt.raw);

  const badCode = verifyAck(sent, `${WIKI_MSH}\rMSA|OK|01052901`);
  assertEquals(badCode.outcome, "not_ack");

  const unreadable = verifyAck(sent, "MSH|\rMSA|AA|01052901");
  if (unreadable.outcome !== "not_ack") throw new Error("not not_ack");
  assertEquals(
    unreadable.reason,
    "Cannot read header: MSH segment is too short (4 characters)",
  );

  const single = verifyAck(sent, new Uint8Array([0x06]));
  assertEquals(single.outcome, "not_ack");
});

Deno.test("verifyAck() takes the sent message, its header or its control id", async () => {
  const raw = await fixtureBytes("adt_a01_wikipedia.hl7");
  const message = asHl7(readMessage(raw));
  const ackText = await fixtureText("ack_aa_for_wikipedia.hl7");
  const replies: (string | Uint8Array | Message)[] = [
    ackText,
    await fixtureBytes("ack_aa_for_wikipedia.hl7"),
    readMessage(ackText),
  ];
  for (const r of replies) {
    for (const sent of [message, message.header, "01052901"]) {
      const result = verifyAck(sent, r);
      assertEquals(result.outcome, "accept");
      assertEquals(result.ok, true);
    }
    assertEquals(
      verifyAck(readHeader(WIKI_MSH.replace("01052901", "9")), r).outcome,
      "mismatch",
    );
  }
});

Deno.test("verifyAck() matches a non-HL7 sent message only with an empty MSA-2", () => {
  const sent = readMessage("Hip hip hurray");
  const rejected = verifyAck(sent, Ack.forMessage(sent, "AA").toString());
  assertEquals(rejected.outcome, "reject");
  const other = verifyAck(sent, reply("AA", "01052901"));
  assertEquals(other.outcome, "mismatch");
  if (other.outcome !== "mismatch") throw new Error("not a mismatch");
  assertEquals(other.expected, "");
});

// --- round trips -----------------------------------------------------------

Deno.test("every code round-trips through text and bytes", async () => {
  const messages = [
    readMessage(WIKI_MSH),
    readMessage(await fixtureBytes("adt_a08_custom_delims.hl7")),
    readMessage(await fixtureBytes("adt_a04_latin1.hl7")),
    readMessage("MSH*:~\\&*SA*SF*RA*RF*1**ORM:O01*C-77*T*2.3.1"),
  ];
  for (const message of messages) {
    for (const code of ACK_CODES) {
      const built = Ack.forMessage(message, code, { text: `Köln ${code}|^~&` });
      for (const wire of [built.toString(), built.toBytes()]) {
        const parsed = Ack.parse(wire);
        assertEquals(parsed.code, code);
        assertEquals(parsed.messageControlId, built.messageControlId);
        assertEquals(parsed.messageControlId, message.header!.controlId);
        assertEquals(parsed.text, `Köln ${code}|^~&`);
        assertEquals(parsed.text, built.text);
        assertEquals(parsed.accepted, built.accepted);
        assertEquals(parsed.header, built.header);
        assertEquals(parsed.toString(), built.toString());
      }
      assertEquals(isAckCode(built.code), true);
    }
  }
});

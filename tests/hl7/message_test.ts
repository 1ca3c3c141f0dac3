import {
  assertEquals,
  assertNotStrictEquals,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import { HeaderError } from "../../src/errors.ts";
import {
  charsetEncoding,
  decodeText,
  encodeText,
  type Hl7Header,
  Hl7Message,
  type Hl7Separators,
  isHl7,
  type Message,
  readHeader,
  readMessage,
  UnknownMessage,
} from "../../src/hl7/message.ts";
import { bytes, fixtureBytes, fixtureText } from "../_helpers.ts";

const STANDARD: Hl7Separators = {
  field: "|",
  component: "^",
  repetition: "~",
  escape: "\\",
  subcomponent: "&",
  truncation: "",
};

/** Narrows a message to HL7, failing the test otherwise. */
function asHl7(message: Message): Hl7Message {
  if (!(message instanceof Hl7Message) || message.kind !== "hl7") {
    throw new Error(`Expected an HL7 message, got ${message.kind}`);
  }
  return message;
}

/** Narrows a message to unknown, failing the test otherwise. */
function asUnknown(message: Message): UnknownMessage {
  if (!(message instanceof UnknownMessage) || message.kind !== "unknown") {
    throw new Error(`Expected an unknown message, got ${message.kind}`);
  }
  return message;
}

/** Bytes as ISO-8859-1, one byte per character (all below U+0100). */
function latin1Bytes(text: string): Uint8Array {
  return new Uint8Array([...text].map((c) => c.charCodeAt(0)));
}

// --- isHl7 -----------------------------------------------------------------

Deno.test("isHl7() is true only for payloads that start with MSH", () => {
  const cases: [Uint8Array | string, boolean][] = [
    ["MSH|^~\\&|A", true],
    ["MSH", true],
    ["MS", false],
    ["", false],
    ["msh|^~\\&|A", false],
    [" MSH|^~\\&|A", false],
    ["FHS|^~\\&|A", false],
    ["Hip hip hurray", false],
    [bytes("MSH|^~\\&|A"), true],
    [bytes("MSH"), true],
    [bytes("MS"), false],
    [new Uint8Array(0), false],
    [bytes([0x0b], "MSH|"), false],
    [bytes("BHS|^~\\&|"), false],
  ];
  for (const [payload, expected] of cases) {
    assertEquals(isHl7(payload), expected, JSON.stringify(String(payload)));
  }
});

// --- fixtures --------------------------------------------------------------

Deno.test("readMessage() reads the wikipedia ADT^A01 fixture", async () => {
  const raw = await fixtureBytes("adt_a01_wikipedia.hl7");
  const message = asHl7(readMessage(raw));
  const expected: Hl7Header = {
    separators: STANDARD,
    encodingCharacters: "^~\\&",
    sendingApplication: "MegaReg",
    sendingFacility: "XYZHospC",
    receivingApplication: "SuperOE",
    receivingFacility: "XYZImgCtr",
    dateTime: "20060529090131-0500",
    security: "",
    messageType: "ADT^A01^ADT_A01",
    messageCode: "ADT",
    triggerEvent: "A01",
    messageStructure: "ADT_A01",
    controlId: "01052901",
    processingId: "P",
    versionId: "2.5",
    acceptAckType: "",
    applicationAckType: "",
    characterSet: "",
  };
  assertEquals(message.kind, "hl7");
  assertEquals(message.header, expected);
  assertEquals(message.encoding, "utf-8");
  assertStrictEquals(message.raw, raw);
  assertEquals(message.size, 713);
  assertEquals(message.text, await fixtureText("adt_a01_wikipedia.hl7"));
  // No MSH-18: the text is UTF-8 (the fixture has a U+2019 apostrophe).
  assertEquals(message.text.includes("~NICKELL\u2019S PICKLES^"), true);
  assertEquals(message.text.split("\r").length, 8);
  // The same header from the text and from readHeader.
  assertEquals(readHeader(raw), expected);
  assertEquals(readHeader(message.text), expected);
  assertEquals(asHl7(readMessage(message.text)).header, expected);
});

Deno.test("readMessage() reads MSH-15 and MSH-16 of the ORU^R01 fixture", async () => {
  const raw = await fixtureBytes("oru_r01_lab.hl7");
  const message = asHl7(readMessage(raw));
  const expected: Hl7Header = {
    separators: STANDARD,
    encodingCharacters: "^~\\&",
    sendingApplication: "LAB",
    sendingFacility: "NORTHLAB",
    receivingApplication: "EHR",
    receivingFacility: "GENHOSP",
    dateTime: "20261127083000",
    security: "",
    messageType: "ORU^R01^ORU_R01",
    messageCode: "ORU",
    triggerEvent: "R01",
    messageStructure: "ORU_R01",
    controlId: "LAB000917",
    processingId: "P",
    versionId: "2.5.1",
    acceptAckType: "AL",
    applicationAckType: "NE",
    characterSet: "",
  };
  assertEquals(message.header, expected);
  assertStrictEquals(message.raw, raw);
  assertEquals(message.text, await fixtureText("oru_r01_lab.hl7"));
});

Deno.test("readMessage() keeps the five encoding characters of the A08 fixture", async () => {
  const raw = await fixtureBytes("adt_a08_custom_delims.hl7");
  const message = asHl7(readMessage(raw));
  const expected: Hl7Header = {
    separators: { ...STANDARD, truncation: "#" },
    encodingCharacters: "^~\\&#",
    sendingApplication: "REG",
    sendingFacility: "CLINIC7",
    receivingApplication: "HUB",
    receivingFacility: "REGION",
    dateTime: "20261127101010",
    security: "",
    messageType: "ADT^A08^ADT_A01",
    messageCode: "ADT",
    triggerEvent: "A08",
    messageStructure: "ADT_A01",
    controlId: "CTRL-A08-0007",
    processingId: "P",
    versionId: "2.7",
    acceptAckType: "",
    applicationAckType: "",
    characterSet: "",
  };
  assertEquals(message.header, expected);
  assertEquals(message.header.separators.truncation, "#");
  assertStrictEquals(message.raw, raw);
  assertEquals(message.text, await fixtureText("adt_a08_custom_delims.hl7"));
});

Deno.test("readMessage() decodes the Latin-1 fixture with MSH-18 8859/1", async () => {
  const raw = await fixtureBytes("adt_a04_latin1.hl7");
  const copy = raw.slice();
  const message = asHl7(readMessage(raw));
  assertEquals(message.header.characterSet, "8859/1");
  assertEquals(message.header.controlId, "LAT1-0001");
  assertEquals(message.header.triggerEvent, "A04");
  assertEquals(message.encoding, "latin1");
  assertEquals(
    message.text,
    "MSH|^~\\&|REG|KLINIK|HUB|REGION|20261127111111||ADT^A04^ADT_A01|LAT1-0001|P|2.5|||||DEU|8859/1\r" +
      "PID|1||7788^^^KLINIK^MR||M\u00dcLLER^J\u00dcRGEN^^^^^L||19610101|M|||Stra\u00dfe 5^^K\u00f6ln^^50667^DEU",
  );
  assertEquals(message.text.includes("MÜLLER^JÜRGEN"), true);
  assertEquals(message.text.includes("Straße 5^^Köln"), true);
  assertEquals(message.text.includes("\ufffd"), false);
  // The raw bytes are the input, unchanged: 0xDC for Ü, 0xDF for ß, 0xF6
  // for ö, one byte each.
  assertStrictEquals(message.raw, raw);
  assertEquals(raw, copy);
  assertEquals(message.size, 178);
  assertEquals(raw[0x78], 0xdc);
  assertEquals(raw[0x9d], 0xdf);
  assertEquals(raw[0xa4], 0xf6);
  assertEquals(message.text.length, raw.length);
  assertEquals(encodeText(message.text, message.encoding), raw);
  // Read as UTF-8 instead, the same bytes would not decode.
  assertEquals(decodeText(raw).includes("\ufffd"), true);
});

Deno.test("readMessage() decodes the UTF-8 Japanese fixture with MSH-18 UNICODE UTF-8", async () => {
  const raw = await fixtureBytes("adt_a04_utf8.hl7");
  const message = asHl7(readMessage(raw));
  assertEquals(message.header.characterSet, "UNICODE UTF-8");
  assertEquals(message.header.controlId, "UTF8-0001");
  assertEquals(message.header.sendingFacility, "CLINIC");
  assertEquals(message.encoding, "utf-8");
  assertEquals(
    message.text,
    "MSH|^~\\&|REG|CLINIC|HUB|REGION|20261127111112||ADT^A04^ADT_A01|UTF8-0001|P|2.5|||||JPN|UNICODE UTF-8\r" +
      "PID|1||9911^^^CLINIC^MR||\u5c71\u7530^\u592a\u90ce^^^^^L||19700101|M",
  );
  assertEquals(message.text.includes("山田^太郎"), true);
  assertStrictEquals(message.raw, raw);
  assertEquals(message.size, 157);
  assertEquals(message.text.length, 149);
});

Deno.test("readMessage() reads the FHS batch fixture as a batch", async () => {
  const raw = await fixtureBytes("batch_fhs_bhs.hl7");
  const message = readMessage(raw);
  assertEquals(message.kind, "batch");
  assertEquals(message.header, undefined);
  assertEquals(message.encoding, "utf-8");
  assertStrictEquals(message.raw, raw);
  assertEquals(message.text, await fixtureText("batch_fhs_bhs.hl7"));
  assertEquals(isHl7(raw), false);
  assertThrows(() => readHeader(raw), HeaderError, "does not start with MSH");
});

Deno.test("readMessage() treats not_hl7.txt as unknown", async () => {
  const raw = await fixtureBytes("not_hl7.txt");
  const message = asUnknown(readMessage(raw));
  assertEquals(message.kind, "unknown");
  assertEquals(message.header, undefined);
  assertStrictEquals(message.raw, raw);
  assertEquals(message.text, "Hip hip hurray");
  assertEquals(message.size, 14);

  const fromText = asUnknown(readMessage("Hip hip hurray"));
  assertEquals(fromText.raw, raw);
  assertEquals(fromText.text, "Hip hip hurray");
  assertEquals(fromText.encoding, "utf-8");
});

// --- segment separators ----------------------------------------------------

Deno.test("readHeader() ends MSH at \\r, \\n or \\r\\n", () => {
  const msh = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5|||||DEU|8859/1";
  for (const end of ["\r", "\n", "\r\n", ""]) {
    const payload = `${msh}${end}PID|1||42`;
    const expected = end === "" ? "8859/1PID" : "8859/1";
    for (const input of [payload, bytes(payload)]) {
      const header = readHeader(input);
      assertEquals(header.characterSet, expected, JSON.stringify(end));
      assertEquals(header.versionId, "2.5");
      assertEquals(header.controlId, "X1");
    }
  }
});

Deno.test("readMessage() reads messages whose segments end with \\n or \\r\\n", () => {
  for (const end of ["\n", "\r\n"]) {
    const payload = `MSH|^~\\&|A|B|C|D|1||ORU^R01|Z7|T|2.4${end}PID|1${end}`;
    const message = asHl7(readMessage(bytes(payload)));
    assertEquals(message.header.versionId, "2.4");
    assertEquals(message.header.processingId, "T");
    assertEquals(message.header.controlId, "Z7");
    assertEquals(message.text, payload);
  }
  // A last field ending at \n must not keep the \n (version "2.5\n").
  assertEquals(
    readHeader("MSH|^~\\&|A|B|C|D|1||ADT^A01|Q|P|2.5\n").versionId,
    "2.5",
  );
  assertEquals(
    readHeader(bytes("MSH|^~\\&|A|B|C|D|1||ADT^A01|Q|P|2.5\r\n")).versionId,
    "2.5",
  );
});

// --- unreadable headers ----------------------------------------------------

Deno.test("readHeader() and readMessage() throw HeaderError for unreadable headers", () => {
  const cases: [string, string][] = [
    ["MSH", "too short"],
    ["MSH|", "too short"],
    ["MSH|^~\\", "too short"],
    ["MSH|^~\\\r|A|B", "too short"],
    ["MSHA^~\\&A", "invalid field separator"],
    ["MSH1^~\\&1B", "invalid field separator"],
    ["MSH ^~\\& A", "invalid field separator"],
    ["MSH\t^~\\&\tA", "invalid field separator"],
    ["MSH|^^\\&|A|B", "invalid encoding characters"],
    ["MSH|^~\\^|A|B", "invalid encoding characters"],
    ["MSH|^~\\&&|A|B", "invalid encoding characters"],
    ["MSH|^~\\|A|B|C", "invalid encoding characters"],
    ["MSH|^~\\&#!|A|B", "invalid encoding characters"],
    ["MSH||^~\\&|A|B", "invalid encoding characters"],
    ["MSH|^~\\a|A|B", "invalid encoding characters"],
    ["MSH|^~ &|A|B", "invalid encoding characters"],
  ];
  for (const [payload, reason] of cases) {
    assertThrows(() => readHeader(payload), HeaderError, reason, payload);
    assertThrows(
      () => readHeader(bytes(payload)),
      HeaderError,
      reason,
      payload,
    );
    assertThrows(() => readMessage(payload), HeaderError, reason, payload);
    assertThrows(
      () => readMessage(bytes(payload)),
      HeaderError,
      reason,
      payload,
    );
  }
});

Deno.test("readHeader() throws HeaderError for payloads that do not start with MSH", () => {
  for (const payload of ["Hip hip hurray", "", "PID|1", " MSH|^~\\&|A"]) {
    assertThrows(
      () => readHeader(payload),
      HeaderError,
      "payload does not start with MSH",
    );
    assertThrows(
      () => readHeader(bytes(payload)),
      HeaderError,
      "payload does not start with MSH",
    );
  }
  const error: HeaderError = assertThrows(
    () => readHeader("MSH|"),
    HeaderError,
  );
  assertEquals(error.name, "HeaderError");
  assertEquals(
    error.message,
    "Cannot read header: MSH segment is too short (4 characters)",
  );
});

// --- fields ----------------------------------------------------------------

Deno.test("readHeader() gives absent fields as empty strings", () => {
  const header = readHeader("MSH|^~\\&|OnlyApp");
  assertEquals(header.sendingApplication, "OnlyApp");
  assertEquals(header.sendingFacility, "");
  assertEquals(header.messageType, "");
  assertEquals(header.messageCode, "");
  assertEquals(header.triggerEvent, "");
  assertEquals(header.messageStructure, "");
  assertEquals(header.controlId, "");
  assertEquals(header.versionId, "");
  assertEquals(header.characterSet, "");

  const minimal = readHeader("MSH|^~\\&");
  assertEquals(minimal.encodingCharacters, "^~\\&");
  assertEquals(minimal.sendingApplication, "");

  const ack = readHeader("MSH|^~\\&|A|B|C|D|1||ACK|9|P|2.3");
  assertEquals(
    [ack.messageType, ack.messageCode, ack.triggerEvent, ack.messageStructure],
    ["ACK", "ACK", "", ""],
  );
});

Deno.test("readHeader() reads every field with * and : separators", () => {
  const header = readHeader(
    "MSH*:~\\&*SA*SF*RA*RF*20240101120000*SEC*ORM:O01:ORM_O01*C-1*D*2.3.1*13*14*ER*SU*DEU*8859/1~UNICODE UTF-8\rPID*1",
  );
  const expected: Hl7Header = {
    separators: { ...STANDARD, field: "*", component: ":" },
    encodingCharacters: ":~\\&",
    sendingApplication: "SA",
    sendingFacility: "SF",
    receivingApplication: "RA",
    receivingFacility: "RF",
    dateTime: "20240101120000",
    security: "SEC",
    messageType: "ORM:O01:ORM_O01",
    messageCode: "ORM",
    triggerEvent: "O01",
    messageStructure: "ORM_O01",
    controlId: "C-1",
    processingId: "D",
    versionId: "2.3.1",
    acceptAckType: "ER",
    applicationAckType: "SU",
    characterSet: "8859/1",
  };
  assertEquals(header, expected);
});

Deno.test("readHeader() takes the first repetition of MSH-18", () => {
  assertEquals(
    readHeader("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||||DEU|8859/1~ISO IR87")
      .characterSet,
    "8859/1",
  );
  assertEquals(
    readHeader("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||||DEU|~8859/1")
      .characterSet,
    "",
  );
  // With another repetition character, `~` is data.
  assertEquals(
    readHeader(
      "MSH|^@\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||||DEU|UNICODE UTF-8@8859/1",
    )
      .characterSet,
    "UNICODE UTF-8",
  );
  // Bytes: the first repetition decides the decoding.
  const raw = bytes(
    "MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||||DEU|8859/1~UNICODE UTF-8\rPID|1||",
    [0xe4],
  );
  const message = asHl7(readMessage(raw));
  assertEquals(message.header.characterSet, "8859/1");
  assertEquals(message.encoding, "latin1");
  assertEquals(message.text.endsWith("PID|1||ä"), true);
});

Deno.test("readHeader() decodes non-ASCII header fields with MSH-18", () => {
  const latin = readHeader(
    latin1Bytes("MSH|^~\\&|Kasse|KÖLN|HUB|R|1||ADT^A01|X|P|2.5|||||DEU|8859/1"),
  );
  assertEquals(latin.sendingFacility, "KÖLN");

  const utf8 = readHeader(
    bytes(
      "MSH|^~\\&|受付|東京|HUB|R|1||ADT^A01|X|P|2.5|||||JPN|UNICODE UTF-8\r",
    ),
  );
  assertEquals(utf8.sendingApplication, "受付");
  assertEquals(utf8.sendingFacility, "東京");

  // No MSH-18, and an MSH-18 this library does not know: UTF-8, the same
  // as the message text.
  for (const charset of ["", "KLINGON"]) {
    const raw = bytes(
      `MSH|^~\\&|Café|B|C|D|1||ADT^A01|X|P|2.5|||||DEU|${charset}\rPID|1||Café`,
    );
    const message = asHl7(readMessage(raw));
    assertEquals(message.header.sendingApplication, "Café");
    assertEquals(message.header.characterSet, charset);
    assertEquals(message.encoding, "utf-8");
    assertEquals(message.text.endsWith("PID|1||Café"), true);
  }
});

// --- charsets --------------------------------------------------------------

Deno.test("charsetEncoding() maps MSH-18 names to encodings", () => {
  const cases: [string, string | undefined][] = [
    ["", "utf-8"],
    ["ASCII", "ascii"],
    ["ISO IR6", "ascii"],
    ["8859/1", "latin1"],
    ["ISO IR100", "latin1"],
    ["8859/2", "iso-8859-2"],
    ["8859/15", "iso-8859-15"],
    ["UNICODE UTF-8", "utf-8"],
    ["UTF-8", "utf-8"],
    ["  unicode utf-8 ", "utf-8"],
    ["iso ir100", "latin1"],
    ["GB 18030", "gb18030"],
    // UTF-16 (and UTF-32): readMessage refuses them unless allowWide.
    ["UNICODE", "utf-16le"],
    ["UNICODE UTF-16", "utf-16le"],
    // Known to table 0211, not decodable here.
    ["CNS 11643-1992", undefined],
    ["8859/9", "iso-8859-9"],
    ["KLINGON", undefined],
    ["8859", undefined],
  ];
  for (const [name, expected] of cases) {
    assertEquals(charsetEncoding(name), expected, name);
  }
});

Deno.test("decodeText() decodes UTF-8 by default, ISO-8859-1 and ASCII exactly", () => {
  assertEquals(decodeText(bytes("Grüße 山")), "Grüße 山");
  assertEquals(decodeText(new Uint8Array([0x41, 0xff, 0x42])), "A\ufffdB");

  const all = new Uint8Array(256).map((_, i) => i);
  const text = decodeText(all, "latin1");
  assertEquals(text.length, 256);
  for (let i = 0; i < 256; i++) assertEquals(text.charCodeAt(i), i);
  // Not windows-1252: 0x80 is U+0080, not the euro sign.
  assertEquals(decodeText(new Uint8Array([0x80]), "latin1"), "\u0080");

  assertEquals(decodeText(bytes("plain"), "ascii"), "plain");
  assertEquals(
    decodeText(new Uint8Array([0x4d, 0xfc, 0x80, 0x7f]), "ascii"),
    "M\ufffd\ufffd\u007f",
  );
  assertEquals(decodeText(new Uint8Array([0xb1]), "iso-8859-2"), "ą");
  // Longer than one 8192-byte chunk.
  const big = new Uint8Array(20000).fill(0xe9);
  assertEquals(decodeText(big, "latin1"), "é".repeat(20000));
  assertThrows(() => decodeText(bytes("x"), "no-such-encoding"), RangeError);
});

Deno.test("encodeText() encodes Latin-1, ASCII and UTF-8", () => {
  assertEquals(encodeText("Mü", "latin1"), new Uint8Array([0x4d, 0xfc]));
  assertEquals(
    encodeText("Straße €", "latin1"),
    new Uint8Array([0x53, 0x74, 0x72, 0x61, 0xdf, 0x65, 0x20, 0x3f]),
  );
  assertEquals(encodeText("Mü", "ascii"), new Uint8Array([0x4d, 0x3f]));
  // A character outside the BMP is one character: one `?`.
  assertEquals(
    encodeText("a😀b", "latin1"),
    new Uint8Array([0x61, 0x3f, 0x62]),
  );
  assertEquals(encodeText("a😀b", "ascii"), new Uint8Array([0x61, 0x3f, 0x62]));
  assertEquals(encodeText("Mü"), new Uint8Array([0x4d, 0xc3, 0xbc]));
  assertEquals(encodeText("Mü", "utf-8"), new Uint8Array([0x4d, 0xc3, 0xbc]));
  assertEquals(encodeText("", "latin1"), new Uint8Array(0));
});

Deno.test("readMessage() encodes a string with MSH-18 8859/1 as Latin-1 bytes", () => {
  const text =
    "MSH|^~\\&|A|B|C|D|1||ADT^A04|L1|P|2.5|||||DEU|8859/1\rPID|1||7||Müller^Jürgen";
  const message = asHl7(readMessage(text));
  assertEquals(message.encoding, "latin1");
  assertEquals(message.raw, latin1Bytes(text));
  assertEquals(message.size, text.length);
  assertEquals(message.raw[message.size - 5], 0xfc);
  assertEquals(message.raw.includes(0xc3), false);
  assertStrictEquals(message.text, text);
  // And it reads back the same from its bytes.
  assertEquals(readMessage(message.raw).text, text);

  // Without MSH-18, a string is encoded as UTF-8.
  const plain = "MSH|^~\\&|A|B|C|D|1||ADT^A04|U1|P|2.5\rPID|1||7||Müller";
  const utf8 = asHl7(readMessage(plain));
  assertEquals(utf8.encoding, "utf-8");
  assertEquals(utf8.raw, new TextEncoder().encode(plain));
  assertEquals(utf8.size, plain.length + 1);
});

// --- raw and text ----------------------------------------------------------

Deno.test("readMessage() keeps raw as exactly the input bytes", async () => {
  for (
    const name of [
      "adt_a01_wikipedia.hl7",
      "adt_a04_latin1.hl7",
      "adt_a04_utf8.hl7",
      "batch_fhs_bhs.hl7",
      "not_hl7.txt",
    ]
  ) {
    const raw = await fixtureBytes(name);
    const copy = raw.slice();
    const message = readMessage(raw);
    assertStrictEquals(message.raw, raw, name);
    assertEquals(message.raw, copy, name);
    assertEquals(message.size, copy.length, name);
    void message.text;
    assertEquals(raw, copy, name);
  }
  const odd = new Uint8Array([0x00, 0xff, 0x0b, 0x1c]);
  assertStrictEquals(readMessage(odd).raw, odd);
  assertEquals(readMessage(odd).text, "\u0000\ufffd\u000b\u001c");
});

Deno.test("message.text is decoded on first use, once", async () => {
  const raw = await fixtureBytes("adt_a04_utf8.hl7");
  const decode = TextDecoder.prototype.decode;
  let calls = 0;
  TextDecoder.prototype.decode = function (
    this: TextDecoder,
    ...args: Parameters<TextDecoder["decode"]>
  ): string {
    calls++;
    return decode.apply(this, args);
  };
  let first: string;
  let second: string;
  let message: Message;
  try {
    message = readMessage(raw);
    // Reading the header may decode the MSH segment, never the whole text.
    const afterRead = calls;
    assertEquals(afterRead <= 1, true);
    first = message.text;
    assertEquals(calls, afterRead + 1);
    second = message.text;
    assertEquals(calls, afterRead + 1);
  } finally {
    TextDecoder.prototype.decode = decode;
  }
  assertStrictEquals(first, second);
  assertEquals(first, await fixtureText("adt_a04_utf8.hl7"));

  // Text given as a string is kept as it is, never decoded.
  const text = "MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\r";
  assertStrictEquals(readMessage(text).text, text);
  const unknown = "Hip hip hurray";
  assertStrictEquals(readMessage(unknown).text, unknown);
});

Deno.test("Hl7Message and UnknownMessage can be constructed directly", () => {
  const raw = latin1Bytes(
    "MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||||DEU|8859/1\rPID|ß",
  );
  const header = readHeader(raw);
  const message = new Hl7Message(raw, header);
  assertEquals(message.kind, "hl7");
  assertEquals(message.encoding, "latin1");
  assertEquals(message.text.endsWith("PID|ß"), true);
  assertStrictEquals(message.header, header);

  const withText = new Hl7Message(raw, header, "given");
  assertEquals(withText.text, "given");

  const unknown = new UnknownMessage(bytes("blob"));
  assertEquals([unknown.kind, unknown.text, unknown.size], [
    "unknown",
    "blob",
    4,
  ]);
  assertNotStrictEquals(unknown.raw, raw);
});

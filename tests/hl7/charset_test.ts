/**
 * HL7 table 0211 charsets end to end: every entry this runtime decodes,
 * sent over a real socket to a receiver, read back as the text it was made
 * from and acknowledged in the same charset; strict and replace decoding,
 * default and override, UTF-16/UTF-32 refused unless allowed, and entries
 * this runtime cannot decode.
 *
 * The samples in `tests/fixtures/charsets/` were encoded once by Python's
 * codecs (see `make_samples.py` there), not by this library, and the reply
 * frames are read with a small reader written here, not the library's
 * framer.
 *
 * @module
 */

import { FrameReader } from "../_raw_frames.ts";
import { KvMessageStore } from "../../src/durable/kv_store.ts";
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { Ack } from "../../src/hl7/ack.ts";
import {
  CharsetError,
  type CharsetOptions,
  checkCharsetOptions,
  decodeCharset,
  encodeCharset,
  findCharset,
  listCharsets,
} from "../../src/hl7/charset.ts";
import type { DispatchReply } from "../../src/dispatch/dispatcher.ts";
import {
  decodeText,
  encodeText,
  type Message,
  readMessage,
} from "../../src/hl7/message.ts";
import { HeaderError } from "../../src/errors.ts";
import { Receiver } from "../../src/receiver/receiver.ts";
import { bytes, fixtureBytes } from "../_helpers.ts";

interface Sample {
  charset: string;
  file: string;
  patient: string;
  address: string;
  text: string;
}

const SAMPLES: Record<string, Sample> = JSON.parse(
  await Deno.readTextFile(
    new URL("../fixtures/charsets/samples.json", import.meta.url),
  ),
);

function sampleBytes(slug: string): Promise<Uint8Array> {
  return fixtureBytes(`charsets/${SAMPLES[slug].file}`);
}

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

/**
 * Sends payloads one at a time on one connection and returns the reply
 * payload to each, read by hand (FrameReader).
 */
async function exchange(
  port: number,
  payloads: Uint8Array[],
): Promise<Uint8Array[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const reader = new FrameReader(conn);
    const replies: Uint8Array[] = [];
    for (const payload of payloads) {
      await conn.write(bytes([VT], payload, [FS, CR]));
      replies.push(await reader.frame());
    }
    return replies;
  } finally {
    conn.close();
  }
}

/** A receiver whose dispatcher records each message it gets. */
async function recordingReceiver(
  charset: CharsetOptions | undefined,
  reply: (message: Message) => DispatchReply = (m) => Ack.forMessage(m, "AA"),
): Promise<{ receiver: Receiver; seen: Message[] }> {
  const seen: Message[] = [];
  const receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    charset,
    dispatcher: (message) => {
      seen.push(message);
      return reply(message);
    },
  });
  return { receiver, seen };
}

/** The MSA fields of an ACK payload read in its charset. */
function msa(reply: Uint8Array, charset?: CharsetOptions): Ack {
  return Ack.parse(readMessage(reply, { charset }));
}

function includesBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return true;
  }
  return false;
}

// --- the table ---------------------------------------------------------------

Deno.test("listCharsets() holds HL7 table 0211 (v2.5-v2.9) and what each maps to", () => {
  const table = listCharsets();
  assertEquals(table.map((entry) => entry.name), [
    "ASCII",
    "8859/1",
    "8859/2",
    "8859/3",
    "8859/4",
    "8859/5",
    "8859/6",
    "8859/7",
    "8859/8",
    "8859/9",
    "8859/15",
    "ISO IR14",
    "ISO IR87",
    "ISO IR159",
    "GB 18030",
    "KS X 1001",
    "CNS 11643-1992",
    "BIG-5",
    "UNICODE",
    "UNICODE UTF-8",
    "UNICODE UTF-16",
    "UNICODE UTF-32",
  ]);
  assertEquals(
    table.filter((entry) => entry.wide).map((entry) => entry.name),
    ["UNICODE", "UNICODE UTF-16", "UNICODE UTF-32"],
  );
  // Every entry with an encoding has a sample, and every sample an entry.
  const sampled = new Set(Object.values(SAMPLES).map((s) => s.charset));
  for (const entry of table) {
    assertEquals(sampled.has(entry.name), entry.encoding !== undefined);
  }
  // A copy: changing it changes nothing.
  table.length = 0;
  assertEquals(listCharsets().length, 22);
});

Deno.test("findCharset() accepts the aliases and spellings peers use", () => {
  const cases: [string, string | undefined][] = [
    ["ISO IR6", "ASCII"],
    ["ISO IR100", "8859/1"],
    ["iso ir 100", "8859/1"],
    ["ISO_IR 100", "8859/1"],
    ["UTF-8", "UNICODE UTF-8"],
    ["  unicode   utf-8 ", "UNICODE UTF-8"],
    ["ISO IR 87", "ISO IR87"],
    ["GB18030", "GB 18030"],
    ["BIG5", "BIG-5"],
    ["8859/9", "8859/9"],
    ["8859", undefined],
    ["KLINGON", undefined],
    ["", undefined],
  ];
  for (const [name, expected] of cases) {
    assertEquals(findCharset(name)?.name, expected, name);
  }
});

Deno.test("single-byte sets: every byte decodes as the ISO standard says and encodes back", () => {
  const all = new Uint8Array(256).map((_, i) => i);
  let checked = 0;
  for (const entry of listCharsets()) {
    const encoding = entry.encoding ?? "";
    const singleByte = encoding.startsWith("iso-8859") ||
      ["ascii", "latin1", "jis-x0201"].includes(encoding);
    if (!singleByte) continue;
    checked++;
    const text = decodeCharset(all, entry.name);
    assertEquals(text.length, 256, entry.name);
    const back = encodeCharset(text, entry.name);
    for (let i = 0; i < 256; i++) {
      if (text[i] === "\ufffd") assertEquals(back[i], 0x3f, entry.name);
      else assertEquals(back[i], i, `${entry.name} byte ${i}`);
    }
    // ISO 8859 puts the C1 controls at 0x80..0x9f (TextDecoder's
    // "iso-8859-9" is windows-1254, which does not).
    if (entry.name.startsWith("8859/")) {
      assertEquals(text.charCodeAt(0x80), 0x80, entry.name);
      assertEquals(text.charCodeAt(0x9f), 0x9f, entry.name);
    }
  }
  // ASCII, 8859/1 to 8859/9, 8859/15 and ISO IR14 (JIS X 0201).
  assertEquals(checked, 12);
  assertEquals(decodeCharset(new Uint8Array([0xdd, 0xfd]), "8859/9"), "İı");
  assertEquals(decodeCharset(new Uint8Array([0xa4]), "8859/15"), "€");
});

Deno.test("multi-byte sets: characters outside the charset encode as ?", () => {
  assertEquals(encodeCharset("A山B", "KS X 1001").length, 4); // 山 is in KS X 1001
  assertEquals(decodeCharset(encodeCharset("Aก😀", "BIG-5"), "BIG-5"), "A??");
  assertEquals(
    decodeCharset(encodeCharset("a😀", "GB 18030"), "GB 18030"),
    "a😀",
  );
  assertEquals(
    decodeCharset(encodeCharset("xé", "ISO IR87"), "ISO IR87"),
    "x?",
  );
  assertEquals(encodeCharset("Ω", "8859/1"), new Uint8Array([0x3f]));
  assertThrows(() => encodeCharset("x", "CNS 11643-1992"), CharsetError);
  assertThrows(() => decodeCharset(new Uint8Array(1), "KLINGON"), CharsetError);
});

// --- every supported entry over a real socket ------------------------------

Deno.test("every charset this runtime decodes round-trips through a receiver, and the ACK comes back in it", async () => {
  const { receiver, seen } = await recordingReceiver(
    { allowWide: true },
    (message) =>
      // MSA-3: the family name, non-ASCII in most samples.
      Ack.forMessage(message, "AA", {
        text: SAMPLES[slugOf(message)].patient.split("^")[0],
      }),
  );
  const slugOf = (message: Message) =>
    Object.keys(SAMPLES)[Number(message.header!.controlId.slice(3))];
  try {
    const slugs = Object.keys(SAMPLES);
    const payloads = await Promise.all(slugs.map(sampleBytes));
    const replies = await exchange(receiver.port, payloads);
    assertEquals(seen.length, slugs.length);
    for (const [i, slug] of slugs.entries()) {
      const sample = SAMPLES[slug];
      const message = seen[i];
      assertEquals(message.kind, "hl7", slug);
      assertEquals(message.text, sample.text, slug);
      assert(!message.text.includes("\ufffd"), slug);
      assertEquals(message.raw, payloads[i], slug);
      // This library encodes the text as Python did, byte for byte.
      assertEquals(encodeText(sample.text, message.encoding), payloads[i]);

      const reply = replies[i];
      // Ack.forMessage copies MSH-18's first repetition only: the ACK to a
      // code extension names none, and is read here with ISO IR87 as the
      // default (a JAHIS peer reads escape sequences whatever MSH-18 says).
      const ack = msa(
        reply,
        sample.charset.startsWith("~")
          ? { default: "ISO IR87" }
          : { allowWide: true },
      );
      assertEquals(ack.code, "AA", slug);
      assertEquals(ack.messageControlId, `CS-${String(i).padStart(2, "0")}`);
      // MSH-18 copied (its first repetition, for a code extension).
      assertEquals(
        ack.header.characterSet,
        sample.charset.split("~")[0],
        slug,
      );
      const family = sample.patient.split("^")[0];
      assertEquals(ack.text, family, slug);
      // The family name's bytes, as the independent encoder wrote them in
      // the sample, are in the reply: the ACK is in the sample's charset
      // (same byte order for UTF-16 BE).
      const familyBytes = encodeText(family, message.encoding);
      assert(includesBytes(payloads[i], familyBytes), `${slug} sample`);
      assert(includesBytes(reply, familyBytes), `${slug} reply`);
    }
  } finally {
    await receiver.stop();
  }
});

Deno.test("the existing Latin-1 and UTF-8 fixtures pass through a receiver with default options", async () => {
  const { receiver, seen } = await recordingReceiver(undefined);
  try {
    const payloads = [
      await fixtureBytes("adt_a04_latin1.hl7"),
      await fixtureBytes("adt_a04_utf8.hl7"),
    ];
    const replies = await exchange(receiver.port, payloads);
    assertStringIncludes(seen[0].text, "MÜLLER^JÜRGEN");
    assertEquals(seen[0].encoding, "latin1");
    assertEquals(seen[1].encoding, "utf-8");
    assert(!seen[1].text.includes("\ufffd"));
    assertEquals(replies.map((r) => msa(r).code), ["AA", "AA"]);
    assertEquals(msa(replies[0]).header.characterSet, "8859/1");
  } finally {
    await receiver.stop();
  }
});

// --- strict and replace ----------------------------------------------------

/** An 8859/8 message whose PID-5 holds 0xff, a byte 8859/8 leaves empty. */
function badHebrew(controlId: string): Uint8Array {
  return bytes(
    `MSH|^~\\&|A|B|C|D|1||ADT^A01|${controlId}|P|2.5|||||ISR|8859/8\rPID|1||7||`,
    [0xeb, 0xe4, 0xff, 0xef],
    "\r",
  );
}

Deno.test("strict: bytes that do not decode get AR naming the charset and the offset", async () => {
  const { receiver, seen } = await recordingReceiver({ invalid: "strict" });
  try {
    const hebrew = badHebrew("BAD-1");
    const offset = hebrew.indexOf(0xff);
    const utf8 = bytes(
      "MSH|^~\\&|A|B|C|D|1||ADT^A01|BAD-2|P|2.5\rPID|1||7||M",
      [0xc3, 0x28],
      "\r",
    );
    const good = await sampleBytes("8859-8");
    const replies = await exchange(receiver.port, [hebrew, utf8, good]);

    const first = msa(replies[0]);
    assertEquals([first.code, first.messageControlId], ["AR", "BAD-1"]);
    assertStringIncludes(first.text, `"8859/8"`);
    assertStringIncludes(first.text, `offset ${offset}`);
    // Replies in the message's charset, as any ACK.
    assertEquals(first.header.characterSet, "8859/8");

    const second = msa(replies[1]);
    assertEquals([second.code, second.messageControlId], ["AR", "BAD-2"]);
    assertStringIncludes(second.text, `"UNICODE UTF-8"`);
    assertStringIncludes(second.text, `offset ${utf8.indexOf(0xc3) + 1}`);

    // Neither reached the dispatcher; the good one after them did.
    assertEquals(seen.map((m) => m.header?.controlId), ["CS-08"]);
    assertEquals(msa(replies[2]).code, "AA");
    assertEquals(seen[0].text, SAMPLES["8859-8"].text);
  } finally {
    await receiver.stop();
  }
});

Deno.test("replace (the default): bytes that do not decode are U+FFFD, and the message is accepted", async () => {
  const { receiver, seen } = await recordingReceiver(undefined);
  try {
    const [reply] = await exchange(receiver.port, [badHebrew("R-1")]);
    assertEquals(msa(reply).code, "AA");
    assert(seen[0].text.endsWith("PID|1||7||כה\ufffdן\r"));
  } finally {
    await receiver.stop();
  }
});

Deno.test("strict leaves payloads that are not HL7 alone", async () => {
  const { receiver, seen } = await recordingReceiver(
    { invalid: "strict" },
    () => "got it",
  );
  try {
    const payload = bytes("Hip hip ", [0xff], " hurray");
    const [reply] = await exchange(receiver.port, [payload]);
    assertEquals(decodeText(reply), "got it");
    assertEquals(seen[0].kind, "unknown");
    assertEquals(seen[0].raw, payload);
  } finally {
    await receiver.stop();
  }
});

// --- default and override --------------------------------------------------

Deno.test("default: a message without MSH-18 is read in the receiver's default, and answered in it", async () => {
  const { receiver, seen } = await recordingReceiver(
    { default: "8859/2" },
    (message) => Ack.forMessage(message, "AA", { text: "Łódź" }),
  );
  try {
    const payload = encodeCharset(
      "MSH|^~\\&|Łódź|B|C|D|1||ADT^A01|D-1|P|2.5\rPID|1||7||DVOŘÁK^ŁUCJA\r",
      "8859/2",
    );
    const [reply] = await exchange(receiver.port, [payload]);
    assertEquals(seen[0].encoding, "iso-8859-2");
    assertStringIncludes(seen[0].text, "DVOŘÁK^ŁUCJA");
    assertEquals(seen[0].header?.sendingApplication, "Łódź");
    assertEquals(seen[0].header?.characterSet, "");
    // The ACK names no charset, as the message, and is in 8859/2 too.
    const ack = msa(reply, { default: "8859/2" });
    assertEquals(ack.text, "Łódź");
    assertEquals(ack.header.receivingApplication, "Łódź");
    assert(includesBytes(reply, encodeCharset("Łódź", "8859/2")));
  } finally {
    await receiver.stop();
  }
});

Deno.test("override: a peer whose MSH-18 lies is read in the override, and answered in it", async () => {
  const { receiver, seen } = await recordingReceiver(
    { override: "8859/5" },
    (message) => Ack.forMessage(message, "AA", { text: "Москва" }),
  );
  try {
    const payload = encodeCharset(
      "MSH|^~\\&|A|B|C|D|1||ADT^A01|O-1|P|2.5|||||RUS|8859/1\rPID|1||7||ИВАНОВ\r",
      "8859/5",
    );
    const [reply] = await exchange(receiver.port, [payload]);
    assertEquals(seen[0].encoding, "iso-8859-5");
    assertStringIncludes(seen[0].text, "ИВАНОВ");
    // MSH-18 as the peer sent it; the ACK copies it but is in 8859/5.
    assertEquals(seen[0].header?.characterSet, "8859/1");
    const ack = msa(reply, { override: "8859/5" });
    assertEquals([ack.code, ack.text], ["AA", "Москва"]);
    assertEquals(ack.header.characterSet, "8859/1");
    assert(includesBytes(reply, encodeCharset("Москва", "8859/5")));
  } finally {
    await receiver.stop();
  }
});

Deno.test("override with a store: the store's consumer reads stored messages in the override too", async () => {
  await using store = await KvMessageStore.open(":memory:", {
    pollInterval: 10,
  });
  const seen: Message[] = [];
  await using receiver = await Receiver.start({
    port: 0,
    hostname: "127.0.0.1",
    charset: { override: "8859/5" },
    store,
    dispatcher: (message) => {
      seen.push(message);
    },
  });
  const payload = encodeCharset(
    "MSH|^~\\&|A|B|C|D|1||ADT^A01|OS-1|P|2.5|||||RUS|8859/1\rPID|1||7||ИВАНОВ\r",
    "8859/5",
  );
  const [reply] = await exchange(receiver.port, [payload]);
  assertEquals(msa(reply, { override: "8859/5" }).code, "AA");
  const end = Date.now() + 5_000;
  while (seen.length === 0 && Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assertEquals(seen.length, 1);
  assertEquals(seen[0].encoding, "iso-8859-5");
  assertStringIncludes(seen[0].text, "ИВАНОВ");
});

// --- wide charsets ---------------------------------------------------------

Deno.test("UTF-16 and UTF-32 are refused by default with AR, and the connection goes on", async () => {
  const { receiver, seen } = await recordingReceiver(undefined);
  try {
    const replies = await exchange(receiver.port, [
      await sampleBytes("utf-16be"),
      await sampleBytes("utf-32"),
      await sampleBytes("8859-1"),
    ]);
    const utf16 = msa(replies[0]);
    assertEquals([utf16.code, utf16.messageControlId], ["AR", "CS-18"]);
    assertStringIncludes(utf16.text, `"UNICODE UTF-16"`);
    assertStringIncludes(utf16.text, "allowWide");
    // In ASCII, with MSH-18 empty: the refusal is readable by any peer.
    assertEquals(utf16.header.characterSet, "");
    assert(replies[0].every((b) => b < 0x80));
    const utf32 = msa(replies[1]);
    assertEquals([utf32.code, utf32.messageControlId], ["AR", "CS-19"]);
    assertStringIncludes(utf32.text, `"UNICODE UTF-32"`);
    assertEquals(msa(replies[2]).code, "AA");
    assertEquals(seen.map((m) => m.header?.controlId), ["CS-01"]);
  } finally {
    await receiver.stop();
  }
});

Deno.test("an MSH-18 naming UTF-16 on a single-byte payload is refused, allowed or not", async () => {
  const payload = new TextEncoder().encode(
    "MSH|^~\\&|A|B|C|D|1||ADT^A01|W-1|P|2.5|||||USA|UNICODE UTF-16\r",
  );
  for (const charset of [undefined, { allowWide: true }]) {
    const { receiver, seen } = await recordingReceiver(charset);
    try {
      const [reply] = await exchange(receiver.port, [payload]);
      const ack = msa(reply);
      assertEquals([ack.code, ack.messageControlId], ["AR", "W-1"]);
      assertStringIncludes(ack.text, `"UNICODE UTF-16"`);
      assertEquals(seen.length, 0);
    } finally {
      await receiver.stop();
    }
  }
});

Deno.test("allowWide: a UTF-16 LE payload with a byte order mark is read, and answered in UTF-16 LE", async () => {
  const { receiver, seen } = await recordingReceiver({ allowWide: true });
  try {
    const payload = bytes([0xff, 0xfe], await sampleBytes("unicode"));
    const [reply] = await exchange(receiver.port, [payload]);
    assertEquals(seen[0].encoding, "utf-16le");
    assertEquals(seen[0].text, SAMPLES.unicode.text);
    assertEquals([reply[0], reply[1], reply[2], reply[3]], [0x4d, 0, 0x53, 0]);
    assertEquals(msa(reply, { allowWide: true }).code, "AA");
  } finally {
    await receiver.stop();
  }
});

// --- unsupported and unknown -------------------------------------------------

Deno.test("entries this runtime cannot decode get AR naming them; unknown names are UTF-8 unless strict", async () => {
  const message = (id: string, charset: string) =>
    bytes(
      `MSH|^~\\&|A|B|C|D|1||ADT^A01|${id}|P|2.5|||||XXX|${charset}\rPID|1||7||`,
      [0xa4, 0xa1],
      "\r",
    );
  const payloads = [
    message("U-1", "CNS 11643-1992"),
    message("U-3", "KLINGON"),
  ];
  {
    const { receiver, seen } = await recordingReceiver(undefined);
    try {
      const replies = await exchange(receiver.port, payloads);
      const cns = msa(replies[0]);
      assertEquals([cns.code, cns.messageControlId], ["AR", "U-1"]);
      assertStringIncludes(cns.text, `"CNS 11643-1992" is not supported`);
      // Not in table 0211: read as UTF-8, as before.
      assertEquals(msa(replies[1]).code, "AA");
      assertEquals(seen.map((m) => m.encoding), ["utf-8"]);
    } finally {
      await receiver.stop();
    }
  }
  {
    const { receiver, seen } = await recordingReceiver({ invalid: "strict" });
    try {
      const [reply] = await exchange(receiver.port, [payloads[1]]);
      const ack = msa(reply);
      assertEquals([ack.code, ack.messageControlId], ["AR", "U-3"]);
      assertStringIncludes(ack.text, `"KLINGON" is not in HL7 table 0211`);
      assertEquals(seen.length, 0);
    } finally {
      await receiver.stop();
    }
  }
});

Deno.test("readMessage() throws CharsetError with the header for what the receiver refuses", async () => {
  const error = assertThrows(
    () => readMessage(badHebrew("E-1"), { charset: { invalid: "strict" } }),
    CharsetError,
  );
  assertEquals(error.problem, "invalid_bytes");
  assertEquals(error.charset, "8859/8");
  assertEquals(error.header?.controlId, "E-1");
  assertEquals(error.name, "CharsetError");
  const utf16 = await sampleBytes("unicode");
  const wide = assertThrows(() => readMessage(utf16), CharsetError);
  assertEquals(wide.problem, "wide_refused");
  assertEquals(wide.header?.controlId, "CS-17");
  // A HeaderError: whatever handles an unreadable header handles it.
  assertInstanceOf(wide, HeaderError);
  assertEquals(
    readMessage(utf16, { charset: { allowWide: true } }).kind,
    "hl7",
  );
});

// --- options ---------------------------------------------------------------

Deno.test("Receiver.start() rejects charset options it cannot honour", async () => {
  const cases: [CharsetOptions, string][] = [
    [
      { default: "LATIN-7" },
      `charset.default "LATIN-7" is not a charset of HL7 table 0211`,
    ],
    [{ override: "CNS 11643-1992" }, "is not supported by this runtime"],
    [{ override: "UNICODE UTF-16" }, "allowWide"],
    [
      { invalid: "lenient" as "strict" },
      `charset.invalid must be "replace" or "strict"`,
    ],
  ];
  for (const [charset, message] of cases) {
    const error = await assertRejects(
      () => Receiver.start({ port: 0, dispatcher: () => {}, charset }),
      TypeError,
    );
    assertStringIncludes(error.message, "Cannot start receiver: ");
    assertStringIncludes(error.message, message);
  }
  checkCharsetOptions({ override: "UNICODE UTF-16", allowWide: true });
});

// --- Japanese: JIS X 0212 and ISO 2022 code extensions ----------------------

Deno.test("ISO IR159 and code extensions: ISO-2022-JP with JIS X 0212, switched by escape sequences", () => {
  // MSH-18 ASCII by default, ISO IR87 and ISO IR159 by escape sequences:
  // text is encoded with them, and read back.
  const text =
    "MSH|^~\\&|A|B|C|D|1||ADT^A01|J-1|P|2.5|||||JPN|~ISO IR87~ISO IR159||ISO 2022-1994\rPID|1||7||丂^山田\r";
  const message = readMessage(text);
  assertEquals(message.encoding, "iso-2022-jp-1");
  assert(message.raw.every((b) => b < 0x80));
  assert(includesBytes(message.raw, bytes([0x1b, 0x24, 0x28, 0x44])));
  assert(includesBytes(message.raw, bytes([0x1b, 0x24, 0x42])));
  assertEquals(readMessage(message.raw).text, text);
  // Only the second repetition: plain ISO-2022-JP.
  const jp = readMessage(text.replace("~ISO IR159", ""));
  assertEquals(jp.encoding, "iso-2022-jp");
  assertEquals(readMessage(jp.raw).text.endsWith("||?^山田\r"), true);
  // Strict: an escape sequence that is not one of them names its offset.
  const bad = bytes(
    "MSH|^~\\&|A|B|C|D|1||ADT^A01|J-2|P|2.5|||||JPN|ISO IR159\rPID|",
    [0x1b, 0x24, 0x29, 0x43],
  );
  const error = assertThrows(
    () => readMessage(bad, { charset: { invalid: "strict" } }),
    CharsetError,
  );
  assertEquals([error.charset, error.offset], ["ISO IR159", bad.length - 4]);
  assertEquals(readMessage(bad).text.endsWith("PID|\ufffd$)C"), true);
  // A JIS X 0212 pair that is not assigned: the offset of its first byte.
  const unassigned = bytes(
    "MSH|^~\\&|A|B|C|D|1||ADT^A01|J-3|P|2.5|||||JPN|ISO IR159\rPID|",
    [0x1b, 0x24, 0x28, 0x44, 0x21, 0x21, 0x1b, 0x28, 0x42],
  );
  const error2 = assertThrows(
    () => readMessage(unassigned, { charset: { invalid: "strict" } }),
    CharsetError,
  );
  assertEquals(error2.offset, unassigned.length - 5);
});

Deno.test("an ACK to a message with ISO 2022 code extensions names them in MSH-18, and is encoded with them", async () => {
  const { receiver, seen } = await recordingReceiver(
    undefined,
    (message) => Ack.forMessage(message, "AA", { text: "受付 済み" }),
  );
  try {
    const message = readMessage(
      "MSH|^~\\&|A|B|C|D|1||ADT^A01|J-9|P|2.5|||||JPN|~ISO IR87||ISO 2022-1994\rPID|1||7||山田^太郎\r",
    );
    assertEquals(message.encoding, "iso-2022-jp");
    const [reply] = await exchange(receiver.port, [message.raw]);
    assertStringIncludes(seen[0].text, "山田^太郎");
    // Seven-bit bytes, with the escape sequences, and MSH-18 whole.
    assert(reply.every((b) => b < 0x80));
    const ack = readMessage(reply);
    assertEquals(ack.encoding, "iso-2022-jp");
    const msh18 = ack.text.split("\r")[0].split("|")[17];
    assertEquals(msh18, "~ISO IR87");
    assertEquals(Ack.parse(ack).text, "受付 済み");
    // Without code extensions, the first repetition only, as before.
    const plain = Ack.forMessage(
      readMessage(
        "MSH|^~\\&|A|B|C|D|1||ADT^A01|J-10|P|2.5|||||JPN|ISO IR6~ISO IR87\r",
      ),
      "AA",
    );
    assertEquals(plain.header.characterSet, "ISO IR6");
    assertEquals(plain.toString().split("\r")[0].split("|")[17], "ISO IR6");
  } finally {
    await receiver.stop();
  }
});

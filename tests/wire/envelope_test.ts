import {
  assertEquals,
  assertNotStrictEquals,
  assertStrictEquals,
} from "@std/assert";
import { isWrapped, unwrap, wrap } from "../../src/wire/envelope.ts";
import { bytes, fixtureBytes, fixtureText } from "../_helpers.ts";

const VT = "\x0b";
const END = "\x1c\r";

Deno.test("wrap frames a string once", () => {
  const framed: string = wrap("Hip hip hurray");
  assertStrictEquals(framed, "\x0bHip hip hurray\x1c\r");
  assertStrictEquals(wrap(framed), framed);
  assertStrictEquals(wrap(wrap(framed)), framed);
  assertStrictEquals(wrap(""), "\x0b\x1c\r");
});

Deno.test("wrap frames bytes once, in a new array", () => {
  const payload = bytes("MSH|a");
  const framed: Uint8Array = wrap(payload);
  assertEquals(framed, bytes([0x0b], "MSH|a", [0x1c, 0x0d]));
  assertNotStrictEquals(framed.buffer, payload.buffer);
  assertEquals(payload, bytes("MSH|a"));
  // Already wrapped: the very same array comes back.
  assertStrictEquals(wrap(framed), framed);
  assertEquals(wrap(new Uint8Array(0)), bytes([0x0b, 0x1c, 0x0d]));
  // A view wraps only its own bytes.
  assertEquals(
    wrap(bytes("xxMSH|ayy").subarray(2, 7)),
    bytes([0x0b], "MSH|a", [0x1c, 0x0d]),
  );
});

Deno.test("unwrap removes the frame from a string", () => {
  const payload: string = unwrap("\x0bHip hip hurray\x1c\r");
  assertStrictEquals(payload, "Hip hip hurray");
  assertStrictEquals(unwrap("\x0b\x1c\r"), "");
  // Only one frame comes off.
  assertStrictEquals(unwrap(VT + VT + "A" + END + END), VT + "A" + END);
});

Deno.test("unwrap removes the frame from bytes", () => {
  const payload: Uint8Array = unwrap(bytes([0x0b], "MSH|a", [0x1c, 0x0d]));
  assertEquals(payload, bytes("MSH|a"));
  assertEquals(unwrap(bytes([0x0b, 0x1c, 0x0d])), new Uint8Array(0));
});

Deno.test("unwrap returns an unwrapped payload unchanged, as the same value", () => {
  for (
    const text of [
      "",
      "A",
      "MSH|^~\\&|A",
      VT + "A", // no end block
      "A" + END, // no start block
      VT + "A\x1c", // FS without CR
      VT + "A\x1c\n", // FS then LF
      VT + "A\r", // CR without FS
      VT + "A" + END + "\n", // trailing junk
      "\n" + VT + "A" + END, // leading junk
      VT + END.slice(0, 1), // too short
    ]
  ) {
    assertStrictEquals(unwrap(text), text, JSON.stringify(text));
    const data = bytes(text);
    const out = unwrap(data);
    assertStrictEquals(out, data, JSON.stringify(text));
    assertEquals(out, bytes(text));
  }
});

Deno.test("isWrapped needs VT first and FS CR last", () => {
  assertEquals(isWrapped(VT + "A" + END), true);
  assertEquals(isWrapped(VT + END), true);
  assertEquals(isWrapped(VT + "\x1c"), false);
  assertEquals(isWrapped("\x1c\r"), false);
  assertEquals(isWrapped(""), false);
  assertEquals(isWrapped("A"), false);
  assertEquals(isWrapped(VT + "A\x1c"), false);
  assertEquals(isWrapped(VT + "A\x1c\n"), false);
  assertEquals(isWrapped(VT + "A" + END + "\n"), false);
  assertEquals(isWrapped(" " + VT + "A" + END), false);

  assertEquals(isWrapped(bytes([0x0b, 0x41, 0x1c, 0x0d])), true);
  assertEquals(isWrapped(bytes([0x0b, 0x1c, 0x0d])), true);
  assertEquals(isWrapped(bytes([0x0b, 0x1c])), false);
  assertEquals(isWrapped(bytes([0x1c, 0x0d])), false);
  assertEquals(isWrapped(new Uint8Array(0)), false);
  assertEquals(isWrapped(bytes([0x0b, 0x41, 0x0d, 0x1c])), false);
  assertEquals(isWrapped(bytes([0x0b, 0x41, 0x1c, 0x0a])), false);
  assertEquals(isWrapped(bytes([0x0b, 0x1c, 0x1c])), false);
  assertEquals(isWrapped(bytes([0x0b, 0x41, 0x1c, 0x0d, 0x0a])), false);
  // A view's own bytes count, not the buffer around it.
  const view = bytes("x", [0x0b, 0x41, 0x1c, 0x0d], "y").subarray(1, 5);
  assertEquals(isWrapped(view), true);
  assertEquals(
    isWrapped(bytes([0x0b, 0x41, 0x1c, 0x0d]).subarray(0, 3)),
    false,
  );
});

Deno.test("wrap and unwrap round-trip strings and bytes", async () => {
  for (const name of ["adt_a01_wikipedia.hl7", "not_hl7.txt"]) {
    const text = await fixtureText(name);
    assertStrictEquals(unwrap(wrap(text)), text);
    assertEquals(isWrapped(text), false);
    assertEquals(isWrapped(wrap(text)), true);
    const data = await fixtureBytes(name);
    assertEquals(unwrap(wrap(data)), data);
    assertEquals(isWrapped(wrap(data)), true);
    // And from the wrapped side: unwrap then wrap gives the frame back.
    const framed = wrap(data);
    assertEquals(wrap(unwrap(framed)), framed);
    assertStrictEquals(wrap(unwrap(wrap(text))), wrap(text));
  }
  // Every byte value except a frame-shaped whole survives the round trip.
  const all = new Uint8Array(256).map((_, i) => i);
  assertEquals(unwrap(wrap(all)), all);
  const allText = String.fromCharCode(...all);
  assertStrictEquals(unwrap(wrap(allText)), allText);
});

Deno.test("wrap and unwrap keep non-ASCII text and bytes intact", async () => {
  const latin1 = await fixtureBytes("adt_a04_latin1.hl7");
  assertEquals(unwrap(wrap(latin1)), latin1);
  const utf8 = await fixtureText("adt_a04_utf8.hl7");
  assertStrictEquals(unwrap(wrap(utf8)), utf8);
  assertStrictEquals(wrap("Ünïcødé ✓"), VT + "Ünïcødé ✓" + END);
});

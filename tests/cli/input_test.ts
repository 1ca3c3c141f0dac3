// How `mllp send` splits its input into messages: MSH starts, blank lines,
// batches, MLLP captures, line endings, and what it refuses.

import { assertEquals, assertThrows } from "@std/assert";
import {
  InputError,
  listDirectory,
  normalize,
  splitMessages,
} from "../../src/cli/input.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function split(text: string, warnings: string[] = []): string[] {
  return splitMessages(
    encoder.encode(text),
    "f.hl7",
    (line) => warnings.push(line),
  ).map((bytes) => decoder.decode(bytes));
}

const A = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5";
const B = "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|2|P|2.5";

Deno.test("splitMessages starts a message at each MSH, in any line ending", () => {
  for (const eol of ["\r", "\n", "\r\n"]) {
    assertEquals(split([A, "PID|1", B, "PID|2", ""].join(eol)), [
      `${A}\rPID|1\r`,
      `${B}\rPID|2\r`,
    ]);
  }
});

Deno.test("splitMessages ends a message at a blank line", () => {
  assertEquals(split(`${A}\nPID|1\n\n  \n${B}\n\n\n`), [
    `${A}\rPID|1\r`,
    `${B}\r`,
  ]);
  assertEquals(split(`\n\n${A}\n`), [`${A}\r`]);
  assertEquals(split("\n \r\n"), []);
});

Deno.test("splitMessages drops batch segments and checks BTS-1", () => {
  const warnings: string[] = [];
  const batch = [
    "FHS|^~\\&|S",
    "BHS|^~\\&|S",
    A,
    B,
    "BTS|2",
    "BHS|^~\\&|S",
    A,
    "BTS|5",
    "FTS|2",
  ].join("\r");
  assertEquals(split(batch, warnings), [`${A}\r`, `${B}\r`, `${A}\r`]);
  assertEquals(warnings, [
    "f.hl7: line 8: BTS-1 says 5 messages; the batch holds 1",
  ]);
});

Deno.test("splitMessages refuses a segment outside a message", () => {
  assertThrows(
    () => split(`${A}\n\nPID|1\n`),
    InputError,
    'f.hl7: line 3: Segment "PID" is outside a message',
  );
  assertThrows(
    () => split(`BHS|^~\\&\nPID|1\n`),
    InputError,
    "line 2",
  );
});

Deno.test("splitMessages sends other payloads whole", () => {
  assertEquals(split("Hip hip hurray\n\nsecond paragraph\n\n"), [
    "Hip hip hurray\n\nsecond paragraph",
  ]);
  assertEquals(split("\uFEFFHello\r\n"), ["Hello"]);
  assertEquals(split(`\uFEFF${A}\n`), [`${A}\r`]);
});

Deno.test("splitMessages reads an MLLP capture as one message per frame", () => {
  assertEquals(
    split(`\x0b${A}\nPID|1\x1c\r\n\x0bHi\x1c\x0b${B}\r\x1c\r`),
    [`${A}\rPID|1\r`, "Hi", `${B}\r`],
  );
  assertThrows(
    () => split(`\x0b${A}\x1c\rjunk`),
    InputError,
    "Byte 45 is outside an MLLP frame",
  );
  assertThrows(
    () => split(`\x0bA\x0bB\x1c\r`),
    InputError,
    "holds a start block (VT) at byte 2",
  );
});

Deno.test("normalize prepares one message as send always has", () => {
  const text = (s: string) => decoder.decode(normalize(encoder.encode(s)));
  assertEquals(text(`\x0b${A}\nPID|1\n\x1c\r`), `${A}\rPID|1\r`);
  assertEquals(text("Hip\n\n"), "Hip");
  assertEquals(text("\n"), "");
});

Deno.test("listDirectory lists message files depth first in name order", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mllp_input_test_" });
  try {
    for (const path of ["b", "a/z", "a/.skip", ".skip"]) {
      await Deno.mkdir(`${dir}/${path}`, { recursive: true });
    }
    for (
      const file of [
        "b/2.hl7",
        "a/z/1.HL7",
        "a/0.er7",
        "a/.skip/x.hl7",
        ".skip/y.hl7",
        "a.txt",
        "c.md",
        "B.hl7",
      ]
    ) {
      await Deno.writeTextFile(`${dir}/${file}`, "x");
    }
    await Deno.symlink(`${dir}/a.txt`, `${dir}/link.hl7`);
    await Deno.symlink(`${dir}/a`, `${dir}/loop.hl7`);
    await Deno.symlink(`${dir}/gone`, `${dir}/dangling.hl7`);
    const files = (await listDirectory(`${dir}/`)).map((path) =>
      path.slice(dir.length + 1)
    );
    assertEquals(files, [
      "B.hl7",
      "a/0.er7",
      "a/z/1.HL7",
      "a.txt",
      "b/2.hl7",
      "link.hl7",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

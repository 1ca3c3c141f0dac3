/**
 * Shared test helpers: fixtures and stream plumbing.
 *
 * @module
 */

import { concat as untypedConcat } from "@std/bytes";

const concat: (buffers: Uint8Array[]) => Uint8Array = untypedConcat;

/** Reads a file from `tests/fixtures/` as bytes. */
export function fixtureBytes(name: string): Promise<Uint8Array> {
  return Deno.readFile(new URL(`./fixtures/${name}`, import.meta.url));
}

/** Reads a file from `tests/fixtures/` as UTF-8 text. */
export function fixtureText(name: string): Promise<string> {
  return Deno.readTextFile(new URL(`./fixtures/${name}`, import.meta.url));
}

/** Concatenates byte arrays. */
export function bytes(
  ...parts: (Uint8Array | string | number[])[]
): Uint8Array {
  const arrays = parts.map((p) =>
    typeof p === "string"
      ? new TextEncoder().encode(p)
      : p instanceof Uint8Array
      ? p
      : new Uint8Array(p)
  );
  return concat(arrays);
}

/** Runs chunks through a transform stream and collects what comes out. */
export function collect<I, O>(
  chunks: I[],
  transform: TransformStream<I, O>,
): Promise<O[]> {
  return Array.fromAsync(ReadableStream.from(chunks).pipeThrough(transform));
}

/** Decodes UTF-8. */
export function text(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}

/**
 * Prints the files of `deno.json`'s exports, one per line, for commands
 * that take the public entry points (`deno doc --lint $(...)`).
 *
 * @module
 */

const config = JSON.parse(
  await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
);
console.log(Object.values(config.exports as Record<string, string>).join("\n"));

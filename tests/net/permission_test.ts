/**
 * Permission errors in one line that names the flag (issue 15, item 12):
 * `missingPermission` reads Deno's `NotCapable` errors, and
 * `permissionError` turns one into the error the library throws.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertStrictEquals,
} from "@std/assert";
import {
  missingPermission,
  permissionError,
} from "../../src/net/permission.ts";

/** Deno's error for a permission it refused, as Deno 2.9 words it. */
function notCapable(name: string, target: string): Error {
  return new Deno.errors.NotCapable(
    `Requires ${name} access to "${target}", run again with the --allow-${name} flag`,
  );
}

Deno.test("missingPermission: reads the permission, its target and the flag from Deno's error", () => {
  assertEquals(missingPermission(notCapable("net", "127.0.0.1:2575")), {
    name: "net",
    target: "127.0.0.1:2575",
    flag: "--allow-net=127.0.0.1:2575",
  });
  assertEquals(
    missingPermission(notCapable("net", "[::1]:2575"))?.flag,
    "--allow-net=[::1]:2575",
  );
  assertEquals(
    missingPermission(notCapable("read", "tls/root-ca/ca_certificate.pem"))
      ?.flag,
    "--allow-read=tls/root-ca/ca_certificate.pem",
  );
  // A path with a space or a comma is quoted for the shell.
  assertEquals(
    missingPermission(notCapable("write", "/tmp/my queue.sqlite"))?.flag,
    `--allow-write="/tmp/my queue.sqlite"`,
  );
  assertEquals(
    missingPermission(notCapable("env", "HOME"))?.flag,
    "--allow-env=HOME",
  );
});

Deno.test("missingPermission: a NotCapable error worded otherwise still names the flag, without a target", () => {
  assertEquals(
    missingPermission(new Deno.errors.NotCapable("Requires net access")),
    { name: "net", target: undefined, flag: "--allow-net" },
  );
  assertEquals(
    missingPermission(new Deno.errors.NotCapable("no idea")),
    { name: undefined, target: undefined, flag: undefined },
  );
});

Deno.test("missingPermission: other errors are not permission errors", () => {
  assertEquals(
    missingPermission(new Deno.errors.ConnectionRefused("no")),
    undefined,
  );
  assertEquals(
    missingPermission(new Error(`Requires net access to "x:1"`)),
    undefined,
  );
  assertEquals(missingPermission("Requires net access"), undefined);
  assertEquals(missingPermission(undefined), undefined);
});

Deno.test("permissionError: one line that says what was refused and names --allow-net=HOST:PORT, -A and -P", () => {
  const cause = notCapable("net", "127.0.0.1:2575");
  const error = permissionError(cause, "Cannot connect to 127.0.0.1:2575");
  assertInstanceOf(error, Deno.errors.NotCapable);
  if (error === undefined) throw new Error("Expected an error");
  assertStrictEquals(error.cause, cause);
  assertEquals(
    error.message,
    `Cannot connect to 127.0.0.1:2575: no net permission for "127.0.0.1:2575"; run Deno with --allow-net=127.0.0.1:2575 (or -A for every permission, or -P for the permission set in deno.json)`,
  );
  assert(!error.message.includes("\n"));
});

Deno.test("permissionError: a permission Deno did not name still points at -A and -P", () => {
  const error = permissionError(
    new Deno.errors.NotCapable("no idea"),
    "Cannot listen",
  );
  assertEquals(
    error?.message,
    "Cannot listen: Deno refused a permission (no idea); run Deno with the flag that grants it (or -A for every permission, or -P for the permission set in deno.json)",
  );
});

Deno.test("permissionError: undefined for an error that is not about permissions", () => {
  assertEquals(permissionError(new Error("boom"), "Cannot connect"), undefined);
});

Deno.test("permissionError: a real refusal, from a process without net permission", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/no_net.ts`;
    await Deno.writeTextFile(
      script,
      `import { permissionError } from "${
        new URL("../../src/net/permission.ts", import.meta.url).href
      }";
try {
  await Deno.connect({ hostname: "127.0.0.1", port: 9 });
} catch (error) {
  console.log(permissionError(error, "Cannot connect to 127.0.0.1:9")?.message);
}
`,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", script],
      stdin: "null",
    }).output();
    assertEquals(
      new TextDecoder().decode(output.stdout),
      `Cannot connect to 127.0.0.1:9: no net permission for "127.0.0.1:9"; run Deno with --allow-net=127.0.0.1:9 (or -A for every permission, or -P for the permission set in deno.json)\n`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

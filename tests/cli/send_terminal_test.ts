// `mllp send` on a terminal: under a real pseudo-terminal (util-linux's
// `script`), the per-message result lines are printed above the progress
// bar, which is redrawn below them.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { Ack, Receiver } from "../../mod.ts";
import { CLEAR_LINE } from "../../src/cli/progress.ts";
import { ROOT, RUN_LIMIT } from "./_helpers.ts";

/** Whether `script` (util-linux) is there to give the CLI a terminal. */
function hasScript(): boolean {
  try {
    return new Deno.Command("script", { args: ["--version"] }).outputSync()
      .success;
  } catch {
    return false;
  }
}

/** A word quoted for `sh`. */
function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * Runs the CLI with stdin, stdout and stderr on one pseudo-terminal, and
 * returns its exit status and what the terminal showed (with its CR LF
 * line endings).
 */
async function runOnTerminal(
  args: string[],
): Promise<{ code: number; screen: string }> {
  const command = ["env", "NO_COLOR=1", Deno.execPath(), "run", "-A"]
    .concat("src/cli.ts", args).map(quote).join(" ");
  const output = await new Deno.Command("script", {
    args: ["-qec", command, "/dev/null"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(RUN_LIMIT),
  }).output();
  // `script -e` exits with the command's status.
  return {
    code: output.code,
    screen: new TextDecoder().decode(output.stdout),
  };
}

Deno.test({
  name: "cli send on a terminal prints each result line above the progress bar",
  ignore: !hasScript(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mllp_send_tty_" });
    await using receiver = await Receiver.start({
      port: 0,
      hostname: "127.0.0.1",
      dispatcher: (message) =>
        Ack.forMessage(
          message,
          message.kind === "hl7" && message.header.controlId === "T3"
            ? "AE"
            : "AA",
        ),
    });
    try {
      const file = `${dir}/three.hl7`;
      await Deno.writeTextFile(
        file,
        ["T1", "T2", "T3"].map((id) =>
          `MSH|^~\\&|A|B|C|D|20240101||ADT^A01|${id}|P|2.5\r`
        ).join(""),
      );
      const { code, screen } = await runOnTerminal([
        "send",
        "--port",
        String(receiver.port),
        file,
      ]);
      assertEquals(code, 1, screen); // T3 got AE
      // Each line is printed where the bar was (erased first), and the bar
      // is drawn again below it.
      for (const id of ["T1", "T2"]) {
        assertMatch(
          screen,
          new RegExp(
            `\\r\\x1b\\[2K${id} AA \\d+\\.\\d ms\\r\\n\\r\\x1b\\[2K\\[`,
          ),
        );
      }
      assertMatch(screen, new RegExp(`\\r\\x1b\\[2KT3 AE \\d+\\.\\d ms\\r\\n`));
      assert(screen.includes(`${CLEAR_LINE}[${"█".repeat(20)}] 3/3  100%`));
      assertMatch(
        screen,
        /^written 3 of 3, answered 3, accepted 2 in .*AA 2, AE 1, /m,
      );
      // In order: T1, T2, T3, then the summary.
      const at = ["T1 AA", "T2 AA", "T3 AE", "written 3 of 3"].map((text) =>
        screen.indexOf(text)
      );
      assertEquals(at.toSorted((a, b) => a - b), at);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * A newcomer's first run, as the README tells it:
 *
 * - what the steps of README.md and docs/ create (`--save ./inbox`,
 *   `--store ./inbound.sqlite`, `mkdir -p outgoing`, ...) is ignored by
 *   git, so following them leaves the clone clean;
 * - after the README's set-up, no later step prints a `Download` line:
 *   checked in a copy of the clone with an empty `DENO_DIR`. That test
 *   fetches from the npm registry, so it runs only where the registry can
 *   be reached (always in CI, `CI=true`), and says so when it is skipped.
 *
 * @module
 */

import { assert, assertEquals, assertNotMatch } from "@std/assert";

const ROOT = new URL("../..", import.meta.url);
const DOCS = [
  "README.md",
  ...[...Deno.readDirSync(new URL("docs/", ROOT))]
    .filter((entry) => entry.name.endsWith(".md"))
    .map((entry) => `docs/${entry.name}`)
    .sort(),
];

/** The shell blocks of a Markdown file, as lines. */
function shellLines(markdown: string): string[] {
  const blocks = markdown.matchAll(/^```(?:sh|shell|bash)\n([\s\S]*?)^```/gm);
  return [...blocks].flatMap((block) => block[1].split("\n"))
    .map((line) => line.replace(/\s+#.*$/, "").trim())
    .filter((line) => line !== "");
}

/**
 * The paths a shell line creates in the clone: the values of the flags
 * that write files or directories, and `mkdir` targets. A KV file comes
 * with SQLite's `-wal` and `-shm` files.
 */
function createdPaths(line: string): string[] {
  const paths: string[] = [];
  const flags =
    /(?:^|\s)--(save|store|queue|json|listen-log|output)[= ]([^\s"'`;&|]+)/g;
  for (const [, flag, path] of line.matchAll(flags)) {
    // --save names a directory.
    paths.push(flag === "save" ? path.replace(/\/?$/, "/") : path);
  }
  for (const [, targets] of line.matchAll(/\bmkdir(?: -p)? ([^;&|]+)/g)) {
    paths.push(
      ...targets.trim().split(/\s+/).map((t) => t.replace(/\/?$/, "/")),
    );
  }
  return paths
    .filter((path) => !/^[A-Z_]+$/.test(path)) // placeholders: PATH, FILE
    .filter((path) => !path.includes("://")) // nats://, https://: no file
    .map((path) => path.replace(/^\.\//, ""))
    .flatMap((path) =>
      /\.(sqlite|kv|db)$/.test(path)
        ? [path, `${path}-wal`, `${path}-shm`]
        : path.endsWith("/")
        ? [path, `${path}01052901.hl7`]
        : [path]
    );
}

async function git(args: string[]): Promise<Deno.CommandOutput> {
  return await new Deno.Command("git", {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
}

async function isGitCheckout(): Promise<boolean> {
  try {
    return (await git(["rev-parse", "--is-inside-work-tree"])).success;
  } catch {
    return false; // no git
  }
}

Deno.test("first run: what the README's and docs' steps create is ignored by git", async (t) => {
  if (!await isGitCheckout()) {
    if (Deno.env.get("CI") === "true") {
      throw new Error("Not a git checkout: the .gitignore cannot be checked");
    }
    console.warn("Skipping the .gitignore check: not a git checkout");
    return;
  }
  const created = new Map<string, string>();
  for (const doc of DOCS) {
    const text = await Deno.readTextFile(new URL(doc, ROOT));
    for (const line of shellLines(text)) {
      for (const path of createdPaths(line)) created.set(path, doc);
    }
  }
  // The README's and docs' steps do create these: the list is not empty.
  for (
    const path of ["inbox/", "inbound.sqlite", "outbound.sqlite", "outgoing/"]
  ) {
    assert(created.has(path), `${path} is no longer made by a step`);
  }
  await t.step("each is ignored", async () => {
    const notIgnored: string[] = [];
    for (const [path, doc] of created) {
      const check = await git(["check-ignore", "--no-index", "-q", path]);
      if (!check.success) notIgnored.push(`${path} (from ${doc})`);
    }
    assertEquals(notIgnored, [], "add these to .gitignore");
  });
  await t.step("nothing tracked is ignored", async () => {
    const ignored = await git([
      "ls-files",
      "--cached",
      "--ignored",
      "--exclude-standard",
    ]);
    assertEquals(new TextDecoder().decode(ignored.stdout), "");
  });
});

/** Whether the npm registry answers, within a few seconds. */
async function npmReachable(): Promise<boolean> {
  try {
    const response = await fetch("https://registry.npmjs.org/deno-std", {
      method: "HEAD",
      signal: AbortSignal.timeout(5_000),
    });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}

/** The commands of the README's "Set up" section, in order. */
async function setUpCommands(): Promise<string[][]> {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const start = readme.indexOf("\n## Set up\n");
  assert(start >= 0, 'README.md has no "## Set up" section');
  const end = readme.indexOf("\n## ", start + 1);
  return shellLines(readme.slice(start, end)).map((line) => line.split(" "));
}

/** Copies the files git knows (tracked, as they are now) into `dir`. */
async function copyClone(dir: string): Promise<void> {
  const listed = await git([
    "ls-files",
    "-z",
    "--cached",
    "--others",
    "--exclude-standard",
  ]);
  const files = new TextDecoder().decode(listed.stdout).split("\0")
    .filter((file) => file !== "");
  for (const file of files) {
    const target = `${dir}/${file}`;
    await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), {
      recursive: true,
    });
    try {
      await Deno.copyFile(new URL(file, ROOT), target);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error; // deleted
    }
  }
}

Deno.test({
  name:
    "first run: with an empty DENO_DIR, after the README's set-up no later step prints a Download line",
  // Children with a fresh cache take a while; the sanitizers stay on.
  async fn() {
    if (!await isGitCheckout()) {
      console.warn("Skipping the first-run check: not a git checkout");
      return;
    }
    if (!await npmReachable()) {
      if (Deno.env.get("CI") === "true") {
        throw new Error("The npm registry cannot be reached (CI=true)");
      }
      console.warn(
        "Skipping the first-run check: the npm registry cannot be reached",
      );
      return;
    }
    const clone = await Deno.makeTempDir({ prefix: "mllp_first_run_" });
    const denoDir = await Deno.makeTempDir({ prefix: "mllp_deno_dir_" });
    const deno = async (args: string[]) => {
      const output = await new Deno.Command(Deno.execPath(), {
        args,
        cwd: clone,
        env: { DENO_DIR: denoDir, NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(120_000),
      }).output();
      return {
        code: output.code,
        stderr: new TextDecoder().decode(output.stderr),
      };
    };
    try {
      await copyClone(clone);
      // The set-up steps, but the whole test suite (this file is in it):
      // its steps up to `deno task test` are the set-up; the demo and
      // every step after it must find everything cached.
      const steps = (await setUpCommands())
        .filter((words) => words.join(" ") !== "deno task test");
      const demo = steps.findIndex((words) =>
        words.join(" ") === "deno task demo"
      );
      assert(demo >= 0, "the README's set-up runs the demo");
      const later = [
        ...steps.slice(demo),
        // What the README and docs/ run next: the command line, the
        // examples, a test file.
        ["deno", "run", "-A", "src/cli.ts", "send", "--help"],
        ["deno", "run", "-A", "src/cli.ts", "listen", "--help"],
        ["deno", "run", "-A", "examples/ack_modes.ts"],
        ["deno", "check", "mod.ts", "src/cli.ts"],
        ["deno", "test", "-A", "tests/wire/framer_test.ts"],
      ];
      for (const words of steps.slice(0, demo)) {
        assertEquals(words[0], "deno", words.join(" "));
        const output = await deno(words.slice(1));
        assertEquals(output.code, 0, `${words.join(" ")}:\n${output.stderr}`);
      }
      for (const words of later) {
        const output = await deno(words.slice(1));
        assertEquals(output.code, 0, `${words.join(" ")}:\n${output.stderr}`);
        assertNotMatch(
          output.stderr,
          /^Download /m,
          `${words.join(" ")} downloaded after the set-up`,
        );
      }
    } finally {
      await Deno.remove(clone, { recursive: true });
      await Deno.remove(denoDir, { recursive: true });
    }
  },
});

/**
 * How the running `mllp` command was started, so that the hints it prints
 * (`Run "... send --help" for usage`) name a command that works: the
 * executable's name when it was built with `deno compile`, or
 * `deno run -A` and the script, as given from a clone or from JSR.
 *
 * @module
 */

/** The JSR package's modules, as `Deno.mainModule` names them. */
const JSR_PACKAGE = /^https:\/\/jsr\.io\/@x\/mllp\/[^/]+\/src\/cli\.ts$/;

/**
 * The command that runs this program, to print in hints:
 *
 * - `deno run -A src/cli.ts` when Deno runs a local file (its path relative
 *   to the working directory when it is below it, absolute otherwise);
 * - `deno run -A jsr:@x/mllp/cli` when it runs from JSR;
 * - the executable, when `deno compile` built one: `mllp` when its folder
 *   is on `PATH`, `./mllp` when it is the working directory, its full path
 *   otherwise;
 * - `mllp` when it cannot be told (a permission is missing).
 */
export function commandName(): string {
  try {
    const exec = Deno.execPath();
    const name = exec.split(/[\\/]/).pop() ?? "";
    if (!/^deno(\.exe)?$/i.test(name)) return executable(exec, name);
    const main = Deno.mainModule;
    if (JSR_PACKAGE.test(main)) return "deno run -A jsr:@x/mllp/cli";
    if (!main.startsWith("file:")) return `deno run -A ${shellWord(main)}`;
    return `deno run -A ${shellWord(relative(filePath(main)))}`;
  } catch {
    return "mllp";
  }
}

/** How to run a compiled executable at `path` whose name is `name`. */
function executable(path: string, name: string): string {
  const folder = path.slice(0, path.length - name.length - 1);
  const onPath = (Deno.env.get("PATH") ?? "").split(
    Deno.build.os === "windows" ? ";" : ":",
  );
  if (onPath.includes(folder)) return shellWord(name);
  if (folder === Deno.cwd()) return shellWord(`./${name}`);
  return shellWord(path);
}

/** The path of a `file:` URL. */
function filePath(url: string): string {
  const path = decodeURIComponent(new URL(url).pathname);
  // "/C:/x" on Windows is "C:/x".
  return /^\/[A-Za-z]:\//.test(path) ? path.slice(1) : path;
}

/** A path relative to the working directory when it is below it. */
function relative(path: string): string {
  const cwd = Deno.cwd().replaceAll("\\", "/");
  const slashed = path.replaceAll("\\", "/");
  return slashed.startsWith(`${cwd}/`) ? slashed.slice(cwd.length + 1) : path;
}

/** A word as a shell needs it: quoted when it holds special characters. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word)
    ? word
    : `'${word.replaceAll("'", `'\\''`)}'`;
}

// Reading the docs' code blocks: every ```ts block of a Markdown file, the
// output the page shows for it, and the command the page says prints an
// output block.
//
// What counts as shown output, in the order the page shows it:
// - the comment at the end of a `console.log(...)` line:
//   `console.log(result.outcome); // accept`;
// - the `//` lines that end a block, after its last line of code (a first
//   line such as `// prints, with the port of this run:` introduces them);
// - an output block (a fence with no language, or `text`) that follows the
//   block before any heading or other fence, when the block has no output
//   comments of its own.
// When the prose between a block and its output block names a command in
// backticks (`deno task demo`, `deno run -A examples/x.ts`), that command's
// output is what the output block shows, and it is checked too.

/** One fenced code block of a Markdown file. */
export interface Fence {
  /** The fence's language (`ts`, `sh`, ...); empty when it has none. */
  lang: string;
  /** The 1-based line of the opening fence. */
  line: number;
  /** The lines between the fences, without the fence's indentation. */
  body: string[];
  /** The prose lines between the previous fence (or heading) and this one. */
  before: string[];
  /** Whether a heading stands between the previous fence and this one. */
  afterHeading: boolean;
}

/** A TypeScript block and what the page shows it prints. */
export interface TsBlock {
  /** The file, relative to the repository root. */
  file: string;
  /** The 1-based line of the opening fence. */
  line: number;
  /** The block's code, as a reader would paste it. */
  code: string;
  /** The lines the page shows on stdout for this block. */
  shown: string[];
  /** The output block after it, with the command that prints it, if any. */
  output?: ShownOutput;
}

/** An output block that the page attributes to a command. */
export interface ShownOutput {
  /** The 1-based line of the output block's opening fence. */
  line: number;
  /** The output block's lines. */
  lines: string[];
  /** The command the prose before it names (`deno ...`), if it names one. */
  command?: string[];
}

/** Splits a Markdown text into its fenced code blocks. */
export function fences(markdown: string): Fence[] {
  const lines = markdown.split("\n");
  const found: Fence[] = [];
  let before: string[] = [];
  let afterHeading = false;
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^(\s*)(`{3,})(\S*)\s*$/);
    if (!open) {
      if (/^#{1,6} /.test(lines[i])) {
        before = [];
        afterHeading = true;
      } else {
        before.push(lines[i]);
      }
      continue;
    }
    const [, indent, ticks, lang] = open;
    const line = i + 1;
    const body: string[] = [];
    for (i++; i < lines.length; i++) {
      if (lines[i].trim() === ticks) break;
      body.push(
        lines[i].startsWith(indent) ? lines[i].slice(indent.length) : lines[i],
      );
    }
    found.push({ lang, line, body, before, afterHeading });
    before = [];
    afterHeading = false;
  }
  return found;
}

const LOG_CALL = /\bconsole\.(log|info)\(/;

/** The output a block's own comments show, in order. */
export function commentOutput(body: string[]): string[] {
  const shown: string[] = [];
  let end = body.length;
  while (end > 0 && body[end - 1].trim() === "") end--;
  let tail = end;
  while (tail > 0 && body[tail - 1].trimStart().startsWith("//")) tail--;
  for (const line of body.slice(0, tail)) {
    const comment = line.match(/\);\s*\/\/ (.*)$/);
    if (comment && LOG_CALL.test(line)) shown.push(comment[1]);
  }
  const trailing = body.slice(tail, end).map((line) =>
    line.trimStart().replace(/^\/\/ ?/, "")
  );
  if (/^prints\b.*:$/i.test(trailing[0] ?? "")) trailing.shift();
  return [...shown, ...trailing];
}

/** The command a paragraph names in backticks, split into arguments. */
export function namedCommand(prose: string[]): string[] | undefined {
  const named = prose.join(" ").match(/`(deno (?:task|run) [^`]+)`/);
  return named?.[1].split(/\s+/).slice(1);
}

/** Every ```ts block of a Markdown file, with the output the page shows. */
export function tsBlocks(file: string, markdown: string): TsBlock[] {
  const all = fences(markdown);
  const blocks: TsBlock[] = [];
  all.forEach((fence, index) => {
    if (fence.lang !== "ts") return;
    const next = all[index + 1];
    const block: TsBlock = {
      file,
      line: fence.line,
      code: fence.body.join("\n") + "\n",
      shown: commentOutput(fence.body),
    };
    if (
      next !== undefined && (next.lang === "" || next.lang === "text") &&
      !next.afterHeading
    ) {
      block.output = {
        line: next.line,
        lines: next.body,
        command: namedCommand(next.before),
      };
      if (block.shown.length === 0) {
        block.shown = next.body.filter((line) => !isLogLine(line));
      }
    }
    blocks.push(block);
  });
  return blocks;
}

/** Whether a line is a log line: an RFC 3339 time and a `[LVL]` tag. */
export function isLogLine(line: string): boolean {
  return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z \[[A-Z]{3}\] /.test(line);
}

/** Replaces what differs from run to run: times, ports and durations. */
export function normalise(line: string): string {
  return line
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, "<time>")
    .replace(
      /(127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\]):\d+/g,
      "$1:<port>",
    )
    .replace(/\bport \d+/g, "port <port>")
    .replace(/\b\d+(\.\d+)? ms\b/g, "<n> ms")
    .trimEnd();
}

/**
 * Whether an actual line matches a shown one, after {@linkcode normalise}:
 * equal, or starting with what a shown line ending in "…" keeps.
 */
export function matches(shown: string, actual: string): boolean {
  const want = normalise(shown);
  const got = normalise(actual);
  if (want.endsWith("…")) return got.startsWith(want.slice(0, -1));
  return want === got;
}

/**
 * The bench's side of its child processes: lines of a child's stdout (or
 * of this process's stdin, in a child), and stopping a child.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";

const logger = getLogger(["mllp", "bench"]);

/** Lines of a byte stream. */
export class LineReader {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  async next(): Promise<string | undefined> {
    while (true) {
      const end = this.#buffer.indexOf("\n");
      if (end !== -1) {
        const line = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 1);
        return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      this.#buffer += value;
    }
  }

  /** The first line `pick` accepts (lines it throws on are skipped). */
  async first<T>(
    pick: (line: string) => T | undefined,
    timeout: number,
    label: string,
  ): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `Cannot start ${label}: not listening within ${timeout} ms`,
            ),
          ),
        timeout,
      );
    });
    try {
      while (true) {
        const line = await Promise.race([this.next(), late]);
        if (line === undefined) {
          throw new Error(`Cannot start ${label}: it exited before listening`);
        }
        try {
          const value = pick(line);
          if (value !== undefined) return value;
        } catch {
          // Not the announcement.
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads and drops lines until the stream ends. */
  async drain(): Promise<void> {
    while (await this.next() !== undefined) {
      // Nothing more is asked.
    }
  }

  cancel(): Promise<void> {
    return this.#reader.cancel().catch(() => {});
  }
}

/**
 * Waits up to 5 s for a child to exit (after a signal, if given), then
 * kills it.
 */
export async function stopChild(
  child: Deno.ChildProcess,
  name: string,
  signal: Deno.Signal | undefined,
): Promise<void> {
  if (signal) {
    try {
      child.kill(signal);
    } catch {
      // It exited already.
    }
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const exited = await Promise.race([
    child.status.then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), 5000);
    }),
  ]);
  clearTimeout(timer);
  if (!exited) {
    logger.warn("{name} did not stop in 5 s; killing it", { name });
    try {
      child.kill("SIGKILL");
    } catch {
      // It exited just now.
    }
    await child.status;
  }
}

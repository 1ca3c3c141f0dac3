// The child-process protocol the bench tool (src/bench/bench.ts) speaks with the
// servers it starts: print one JSON line {"hostname", "port", "pid"} once
// listening; answer each "rss" line on stdin with {"rss": bytes}; stop when
// stdin ends or on SIGTERM / SIGINT.

import process from "node:process";
import { createInterface } from "node:readline";

/** The --port and --hostname arguments, with defaults. */
export function parseArgs(argv = process.argv.slice(2)) {
  const options = { port: 0, hostname: "127.0.0.1" };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--port") options.port = Number(value);
    else if (flag === "--hostname") options.hostname = value;
    else throw new Error(`Unknown argument "${flag}"`);
  }
  return options;
}

/**
 * Announces a listening server and serves the protocol until told to stop.
 *
 * @param {{ hostname: string, port: number }} address Where it listens.
 * @param {() => Promise<void>} stop Stops the server.
 */
export function announce(address, stop) {
  let stopping = false;
  const end = async () => {
    if (stopping) return;
    stopping = true;
    // Servers that wait for their connections to end get a second.
    const timeout = new Promise((resolve) => setTimeout(resolve, 1000));
    try {
      await Promise.race([stop(), timeout]);
    } finally {
      process.exit(0);
    }
  };
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    if (line.trim() === "rss") {
      globalThis.gc?.();
      process.stdout.write(
        JSON.stringify({ rss: process.memoryUsage().rss }) + "\n",
      );
    }
  });
  lines.on("close", end);
  process.on("SIGTERM", end);
  process.on("SIGINT", end);
  process.stdout.write(
    JSON.stringify({ ...address, pid: process.pid }) + "\n",
  );
}

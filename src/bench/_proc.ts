/**
 * What Linux's `/proc` tells about a process the bench measures: its
 * resident set size, its CPU time, whether something listens on a port;
 * and a sampler that keeps the peak RSS while a run goes on. Everywhere
 * else (or without permission) the readers return `undefined`.
 *
 * @module
 */

/** VmRSS from `/proc/PID/status`, in bytes; `undefined` where unreadable. */
export async function procRss(pid: number): Promise<number | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * User plus system CPU time of a process, all its threads, in ms, from
 * `/proc/PID/stat` (fields 14 and 15, in clock ticks of 10 ms, the Linux
 * default); `undefined` where unreadable.
 */
export async function procCpuTime(pid: number): Promise<number | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The fields after the command name, which may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/**
 * Whether a socket listens on `port` (any address), from
 * `/proc/net/tcp` and `/proc/net/tcp6`; `undefined` where unreadable.
 */
export async function procListening(
  port: number,
): Promise<boolean | undefined> {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  let known = false;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let table: string;
    try {
      table = await Deno.readTextFile(file);
    } catch {
      continue;
    }
    known = true;
    for (const line of table.split("\n").slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      // State 0A is LISTEN.
      if (state === "0A" && local?.endsWith(`:${hex}`)) return true;
    }
  }
  return known ? false : undefined;
}

/** The peak of a process's RSS while a run goes on. */
export interface RssSampler {
  /**
   * Stops sampling.
   *
   * @returns The highest reading, or `undefined` if none could be made.
   */
  stop(): Promise<number | undefined>;
}

/**
 * Reads a process's RSS every `interval` ms (and once at once) until
 * stopped, and keeps the highest reading.
 */
export function sampleRss(
  read: () => Promise<number | undefined>,
  interval = 100,
): RssSampler {
  let peak: number | undefined;
  let reading: Promise<void> = Promise.resolve();
  const take = () => {
    reading = reading.then(async () => {
      const rss = await read();
      if (rss !== undefined && (peak === undefined || rss > peak)) peak = rss;
    });
  };
  take();
  const timer = setInterval(take, interval);
  return {
    async stop() {
      clearInterval(timer);
      take();
      await reading;
      return peak;
    },
  };
}

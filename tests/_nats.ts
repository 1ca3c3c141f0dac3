/**
 * A NATS JetStream cluster for tests: `nats-server` nodes (Debian's
 * `/usr/sbin/nats-server`, or one on PATH) on free loopback ports, each
 * with a temporary store directory, routed to each other as one cluster.
 * `startNatsCluster()` returns once every node runs and agrees on a
 * JetStream meta leader; the cluster can stop, SIGKILL and restart a node
 * by its pid, name a stream's leader, and wait until a stream's replicas
 * are current. Disposing it stops every node and removes the directories.
 *
 * Nothing is left behind, even when the test process itself dies: a guard
 * (`sh`, reading a pipe from this process) SIGKILLs every node whose pid
 * file is still there and removes the directory once that pipe closes,
 * which happens when the cluster is closed or when this process ends in
 * any way.
 *
 * @module
 */

/** Where `nats-server` is, or `undefined` when it is not installed. */
export async function natsServerPath(): Promise<string | undefined> {
  for (const candidate of ["/usr/sbin/nats-server", "/usr/bin/nats-server"]) {
    try {
      if ((await Deno.stat(candidate)).isFile) return candidate;
    } catch {
      // Not there: try the next.
    }
  }
  try {
    const { success, stdout } = await new Deno.Command("sh", {
      args: ["-c", "command -v nats-server"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const path = new TextDecoder().decode(stdout).trim();
    return success && path ? path : undefined;
  } catch {
    return undefined;
  }
}

/** A port free on 127.0.0.1 right now (the OS picks it). */
function freePort(taken: Set<number>): number {
  for (;;) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = listener.addr as Deno.NetAddr;
    listener.close();
    if (!taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
}

/** Options for {@linkcode startNatsCluster}. */
export interface NatsClusterOptions {
  /** How many nodes. @default {3} */
  nodes?: number;
  /**
   * The servers' `max_payload`, in bytes: the largest message a client may
   * publish. nats-server's default is 1 MiB; the tests store 4 MiB
   * messages. @default {8388608}
   */
  maxPayload?: number;
  /** How long to wait for the cluster to be ready, in ms. @default {30000} */
  readyTimeout?: number;
  /**
   * Whether to wait until JetStream is ready before returning; `false`
   * returns as soon as the node processes are started. @default {true}
   */
  waitReady?: boolean;
  /**
   * More server configuration, added to every node's file as it is (an
   * `authorization { ... }` or `tls { ... }` block).
   */
  extraConfig?: string;
}

/** One node of a {@linkcode NatsCluster}. */
export interface NatsNode {
  /** Its index in the cluster, from 0. */
  index: number;
  /** Its `server_name` (`n1`, `n2`, ...). */
  name: string;
  /** Its client port on 127.0.0.1. */
  port: number;
  /** Its cluster (route) port. */
  clusterPort: number;
  /** Its HTTP monitoring port (`/healthz`, `/jsz`). */
  monitorPort: number;
  /** Its JetStream store directory. */
  storeDir: string;
}

interface Running {
  child: Deno.ChildProcess;
  status: Promise<Deno.CommandStatus>;
  /** Set once the process has ended. */
  ended?: Deno.CommandStatus;
}

/** What a node's `/jsz?streams=true` says about one stream's cluster. */
export interface StreamClusterInfo {
  leader?: string;
  replicas?: { name: string; current: boolean; offline?: boolean }[];
}

/**
 * A running test cluster; see the module documentation.
 */
export class NatsCluster implements AsyncDisposable {
  readonly dir: string;
  readonly nodes: readonly NatsNode[];
  #binary: string;
  #maxPayload: number;
  #extraConfig: string;
  #running = new Map<number, Running>();
  #guard: Deno.ChildProcess;
  #guardInput: WritableStreamDefaultWriter<Uint8Array>;
  #closing: Promise<void> | undefined;

  constructor(
    binary: string,
    dir: string,
    nodes: NatsNode[],
    maxPayload: number,
    extraConfig = "",
  ) {
    this.#binary = binary;
    this.#extraConfig = extraConfig;
    this.dir = dir;
    this.nodes = nodes;
    this.#maxPayload = maxPayload;
    this.#guard = new Deno.Command("sh", {
      args: [
        "-c",
        'cat >/dev/null; for f in "$1"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done; rm -rf "$1"',
        "nats-guard",
        dir,
      ],
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.#guardInput = this.#guard.stdin.getWriter();
  }

  /** The client URLs of every node, `nats://127.0.0.1:PORT`. */
  get servers(): string[] {
    return this.nodes.map((node) => `nats://127.0.0.1:${node.port}`);
  }

  /** The indexes of the nodes running now. */
  get running(): number[] {
    return [...this.#running.keys()].sort();
  }

  /** The pid of a running node, or `undefined`. */
  pid(index: number): number | undefined {
    return this.#running.get(index)?.child.pid;
  }

  /** The index of the node with this `server_name`. */
  indexOf(name: string): number {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`No node named "${name}" in the test cluster`);
    return node.index;
  }

  #config(node: NatsNode): string {
    const routes = this.nodes.filter((other) => other !== node).map((other) =>
      `"nats-route://127.0.0.1:${other.clusterPort}"`
    );
    return [
      `server_name: "${node.name}"`,
      `listen: "127.0.0.1:${node.port}"`,
      `http: "127.0.0.1:${node.monitorPort}"`,
      `max_payload: ${this.#maxPayload}`,
      `pid_file: "${this.dir}/${node.name}.pid"`,
      `log_file: "${this.dir}/${node.name}.log"`,
      this.#extraConfig,
      `jetstream {`,
      `  store_dir: "${node.storeDir}"`,
      `  max_memory_store: 268435456`,
      `  max_file_store: 4294967296`,
      `}`,
      // One node: no cluster block (JetStream refuses a cluster of one).
      ...(this.nodes.length === 1 ? [] : [
        `cluster {`,
        `  name: "mllp-test"`,
        `  listen: "127.0.0.1:${node.clusterPort}"`,
        `  routes: [${routes.join(", ")}]`,
        `}`,
      ]),
      "",
    ].join("\n");
  }

  /** Starts a node that is not running (a restart keeps its store). */
  async start(index: number): Promise<void> {
    if (this.#running.has(index)) return;
    const node = this.nodes[index];
    const config = `${this.dir}/${node.name}.conf`;
    await Deno.writeTextFile(config, this.#config(node));
    const child = new Deno.Command(this.#binary, {
      args: ["-c", config],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const running: Running = { child, status: child.status };
    running.status.then((status) => running.ended = status);
    this.#running.set(index, running);
  }

  /** Throws if a node that should be running has exited. */
  #checkAlive(): void {
    for (const [index, running] of this.#running) {
      if (running.ended) {
        throw new Error(
          `nats-server ${
            this.nodes[index].name
          } exited with code ${running.ended.code}`,
        );
      }
    }
  }

  /**
   * Stops a node with a signal (SIGTERM: a clean shutdown; SIGKILL: a
   * crash) and waits until its process has ended.
   */
  async kill(index: number, signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const running = this.#running.get(index);
    if (!running) return;
    try {
      running.child.kill(signal);
    } catch {
      // It had ended already.
    }
    await running.status;
    this.#running.delete(index);
    await Deno.remove(`${this.dir}/${this.nodes[index].name}.pid`).catch(
      () => {},
    );
  }

  /** Stops a node cleanly (SIGTERM), or SIGKILLs it after `ms`. */
  async stop(index: number, ms = 5_000): Promise<void> {
    const running = this.#running.get(index);
    if (!running) return;
    const timer = setTimeout(() => {
      try {
        running.child.kill("SIGKILL");
      } catch {
        // Ended meanwhile.
      }
    }, ms);
    try {
      await this.kill(index, "SIGTERM");
    } finally {
      clearTimeout(timer);
    }
  }

  /** GETs a node's monitoring endpoint as JSON, or `undefined`. */
  async monitor(index: number, path: string): Promise<unknown> {
    const { monitorPort } = this.nodes[index];
    try {
      const response = await fetch(`http://127.0.0.1:${monitorPort}${path}`, {
        signal: AbortSignal.timeout(2_000),
      });
      const body = await response.text();
      try {
        return JSON.parse(body);
      } catch {
        return undefined;
      }
    } catch {
      return undefined;
    }
  }

  /**
   * Waits until every running node answers `/healthz` with ok and names
   * the same JetStream meta leader.
   */
  async waitReady(timeout = 30_000): Promise<void> {
    await waitFor(
      async () => {
        const leaders = new Set<string>();
        for (const index of this.running) {
          const health = await this.monitor(index, "/healthz") as
            | { status?: string }
            | undefined;
          if (health?.status !== "ok") return false;
          // A single node has no meta cluster: healthy is ready.
          if (this.nodes.length === 1) return true;
          const jsz = await this.monitor(index, "/jsz") as
            | { meta_cluster?: { leader?: string } }
            | undefined;
          const leader = jsz?.meta_cluster?.leader;
          if (!leader) return false;
          leaders.add(leader);
        }
        return leaders.size === 1;
      },
      "the NATS cluster to be ready",
      timeout,
    );
  }

  /** What one node's `/jsz` reports about a stream's cluster. */
  async #streamClusterAt(
    index: number,
    stream: string,
  ): Promise<StreamClusterInfo | undefined> {
    const jsz = await this.monitor(
      index,
      "/jsz?accounts=true&streams=true",
    ) as {
      account_details?: {
        stream_detail?: { name: string; cluster?: StreamClusterInfo }[];
      }[];
    } | undefined;
    for (const account of jsz?.account_details ?? []) {
      for (const detail of account.stream_detail ?? []) {
        if (detail.name === stream) return detail.cluster;
      }
    }
    return undefined;
  }

  /**
   * A stream's cluster as its leader reports it (a follower's view of the
   * other replicas is not up to date), or `undefined` while it has no
   * running leader.
   */
  async streamCluster(stream: string): Promise<StreamClusterInfo | undefined> {
    for (const index of this.running) {
      const seen = await this.#streamClusterAt(index, stream);
      if (!seen?.leader) continue;
      const leader = this.nodes.find((n) => n.name === seen.leader);
      if (!leader || !this.#running.has(leader.index)) return undefined;
      const own = await this.#streamClusterAt(leader.index, stream);
      return own?.leader === seen.leader ? own : undefined;
    }
    return undefined;
  }

  /**
   * The index of the node leading a stream's consumer, as the running
   * nodes report it, or `undefined`.
   */
  async consumerLeader(
    stream: string,
    consumer: string,
  ): Promise<number | undefined> {
    for (const index of this.running) {
      const jsz = await this.monitor(
        index,
        "/jsz?accounts=true&streams=true&consumers=true",
      ) as {
        account_details?: {
          stream_detail?: {
            name: string;
            consumer_detail?: {
              name: string;
              cluster?: { leader?: string };
            }[];
          }[];
        }[];
      } | undefined;
      for (const account of jsz?.account_details ?? []) {
        for (const detail of account.stream_detail ?? []) {
          if (detail.name !== stream) continue;
          for (const c of detail.consumer_detail ?? []) {
            if (c.name === consumer && c.cluster?.leader) {
              return this.indexOf(c.cluster.leader);
            }
          }
        }
      }
    }
    return undefined;
  }

  /** Waits until a stream has a leader among the running nodes; its index. */
  async streamLeader(stream: string, timeout = 30_000): Promise<number> {
    let leader = -1;
    await waitFor(
      async () => {
        const cluster = await this.streamCluster(stream);
        if (!cluster?.leader) return false;
        const index = this.indexOf(cluster.leader);
        if (!this.#running.has(index)) return false;
        leader = index;
        return true;
      },
      `a leader for stream ${stream}`,
      timeout,
    );
    return leader;
  }

  /**
   * Waits until a stream has a running leader and every other running
   * node reports its replica current (caught up).
   */
  async waitCurrent(stream: string, timeout = 30_000): Promise<void> {
    await waitFor(
      async () => {
        const cluster = await this.streamCluster(stream);
        if (!cluster?.leader) return false;
        if (!this.#running.has(this.indexOf(cluster.leader))) return false;
        const replicas = cluster.replicas ?? [];
        const others = this.running.map((i) => this.nodes[i].name).filter((
          name,
        ) => name !== cluster.leader);
        return others.every((name) =>
          replicas.some((r) => r.name === name && r.current && !r.offline)
        );
      },
      `the replicas of stream ${stream} to be current`,
      timeout,
    );
  }

  /** A node's log, for a failing test's message. */
  async log(index: number): Promise<string> {
    return await Deno.readTextFile(
      `${this.dir}/${this.nodes[index].name}.log`,
    ).catch(() => "");
  }

  /** Stops every node and removes the directories. */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      await Promise.all(this.running.map((index) => this.stop(index, 3_000)));
      await this.#guardInput.close().catch(() => {});
      await this.#guard.status;
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    })();
  }

  /** Closes the cluster; for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Polls `check` until it holds; fails after `timeout` ms. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeout = 30_000,
  interval = 100,
): Promise<void> {
  const end = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > end) {
      throw new Error(`Timed out waiting for ${what} (${timeout} ms)`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/**
 * Starts a JetStream cluster on free loopback ports and waits until it is
 * ready. Fails with a clear message when `nats-server` is not installed.
 *
 * @param options How many nodes, max payload, how long to wait.
 * @returns The running cluster; dispose of it to stop it.
 */
export async function startNatsCluster(
  options: NatsClusterOptions = {},
): Promise<NatsCluster> {
  const binary = await natsServerPath();
  if (!binary) {
    throw new Error(
      "Cannot start a NATS cluster: nats-server is not installed (apt-get install nats-server)",
    );
  }
  const count = options.nodes ?? 3;
  const dir = await Deno.makeTempDir({ prefix: "mllp-nats-" });
  const taken = new Set<number>();
  const nodes: NatsNode[] = [];
  for (let index = 0; index < count; index++) {
    const name = `n${index + 1}`;
    const storeDir = `${dir}/${name}`;
    await Deno.mkdir(storeDir);
    nodes.push({
      index,
      name,
      port: freePort(taken),
      clusterPort: freePort(taken),
      monitorPort: freePort(taken),
      storeDir,
    });
  }
  const cluster = new NatsCluster(
    binary,
    dir,
    nodes,
    options.maxPayload ?? 8 * 1024 * 1024,
    options.extraConfig,
  );
  try {
    for (const node of nodes) await cluster.start(node.index);
    if (options.waitReady !== false) {
      await cluster.waitReady(options.readyTimeout ?? 30_000);
    }
  } catch (error) {
    const logs = await Promise.all(nodes.map((n) => cluster.log(n.index)));
    await cluster.close();
    throw new Error(
      `${(error as Error).message}\n${
        logs.map((log, i) => `--- n${i + 1}\n${log.slice(-2_000)}`).join("\n")
      }`,
    );
  }
  return cluster;
}

/**
 * Waits until every server accepts TCP connections (its process is up),
 * which comes before JetStream is ready: for a cluster started with
 * `waitReady: false`.
 */
export async function waitListening(
  servers: string[],
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const server of servers) {
    const { hostname, port } = new URL(server);
    for (;;) {
      try {
        (await Deno.connect({ hostname, port: Number(port) })).close();
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }
}

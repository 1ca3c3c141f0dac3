/**
 * The npm servers and clients `deno task bench` compares this library
 * with, run under Node from `tests/bench/peers/` (pinned in its
 * package.json and package-lock.json, installed with `npm ci` on first
 * use): the targets and client commands for `compare` and
 * `compareClients`, named with their versions.
 *
 * @module
 */

import type { ClientCommand, CommandTarget } from "../../src/bench/bench.ts";

const PEERS = new URL("./peers/", import.meta.url);

/** The packages, as named in tests/bench/peers/package.json. */
const PACKAGES = [
  "simple-hl7",
  "node-hl7-server",
  "node-hl7-client",
  "@medplum/hl7",
  "nodehl7",
] as const;

/** What is installed, and how to run it. */
export interface Peers {
  /** `node --version`, when Node was found. */
  node?: string;
  /** The servers every load measures, alternating with raw and self. */
  servers: CommandTarget[];
  /**
   * node-hl7-server: its cost per message grows with the messages a
   * connection has sent (its inbound buffer keeps them all), so it is
   * measured with few messages per connection, in a run of its own.
   */
  growingServers: CommandTarget[];
  /** The clients, for original mode without TLS (none speaks release 2). */
  clients: ClientCommand[];
}

async function run(
  program: string,
  args: string[],
  cwd?: URL,
): Promise<string> {
  const output = await new Deno.Command(program, {
    args,
    cwd,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!output.success) {
    throw new Error(`${program} ${args.join(" ")} failed (${output.code})`);
  }
  return new TextDecoder().decode(output.stdout);
}

async function installed(name: string): Promise<string | undefined> {
  try {
    const file = new URL(`node_modules/${name}/package.json`, PEERS);
    return JSON.parse(await Deno.readTextFile(file)).version;
  } catch {
    return undefined;
  }
}

/**
 * Finds Node, installs the peers if any is missing (`npm ci`), and
 * describes them; without Node, or when `enabled` is false, there are
 * none.
 */
export async function peers(
  enabled: boolean,
  say: (line: string) => void,
): Promise<Peers> {
  const none: Peers = { servers: [], growingServers: [], clients: [] };
  if (!enabled) return none;
  let node: string;
  try {
    node = (await run("node", ["--version"])).trim();
  } catch {
    say("node not found: skipping the npm peers");
    return none;
  }
  const versions = await Promise.all(PACKAGES.map(installed));
  if (versions.includes(undefined)) {
    say("Installing the peers into tests/bench/peers/node_modules (npm ci)");
    await run(
      "npm",
      ["ci", "--no-audit", "--no-fund", "--loglevel=error"],
      PEERS,
    );
  }
  const version = async (name: (typeof PACKAGES)[number]) =>
    `${name} ${await installed(name)}`;
  const script = (file: string) => [
    "node",
    "--expose-gc",
    new URL(file, PEERS).pathname,
  ];
  const server = async (
    name: (typeof PACKAGES)[number],
    file: string,
  ): Promise<CommandTarget> => ({
    name: await version(name),
    command: script(file),
    cwd: PEERS,
  });
  const client = async (
    name: (typeof PACKAGES)[number],
    file: string,
    label = "",
  ): Promise<ClientCommand> => ({
    name: `${await version(name)}${label}`,
    command: script(file),
    cwd: PEERS,
  });
  return {
    node,
    servers: [
      await server("simple-hl7", "simple_hl7_server.mjs"),
      await server("@medplum/hl7", "medplum_server.mjs"),
      await server("nodehl7", "nodehl7_server.mjs"),
    ],
    growingServers: [await server("node-hl7-server", "node_hl7_server.mjs")],
    clients: [
      await client("node-hl7-client", "node_hl7_client.mjs"),
      await client("simple-hl7", "simple_hl7_client.mjs", " (client)"),
      await client("@medplum/hl7", "medplum_client.mjs", " (client)"),
    ],
  };
}

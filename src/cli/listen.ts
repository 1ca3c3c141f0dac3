/**
 * `mllp listen`: run a receiver that answers every message (AA by
 * default; `--reply ae|ar`), optionally saving each message to a file
 * before answering it (`--save DIR`), until SIGINT or SIGTERM.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../net/address.ts";
import {
  type MessageStore,
  Receiver,
  type ReceiverTlsOptions,
} from "../receiver/receiver.ts";
import {
  type CommandOptions,
  describeError,
  type Flags,
  type Io,
  listFlag,
  numberFlag,
  parseFlags,
  portFlag,
  setupLogging,
  stringFlag,
  UsageError,
  write,
} from "./common.ts";
import {
  batchAcksFlag,
  batchesFlag,
  charsetFlags,
  LISTEN_MODE_FLAGS,
  mllpReleaseFlag,
} from "./modes.ts";
import {
  isNatsUrl,
  NATS_FLAGS,
  NATS_USAGE,
  natsOptions,
} from "./nats_options.ts";
import {
  MessageSaver,
  replyDispatcher,
  type ReplyMode,
  savingDispatcher,
} from "./save.ts";

const logger = getLogger(["mllp", "cli"]);

/** `mllp listen --help`. */
export const LISTEN_USAGE = `Usage: mllp listen [options]

Run an MLLP receiver that answers every message and logs one line per
message to stderr. By default it answers as the EchoDispatcher does: HL7
messages get AA and anything else "mllp_unknown". Once listening it prints
"listening on HOST:PORT" to stderr, then runs until SIGINT (Ctrl-C) or
SIGTERM.

Options:
  --port PORT          Port to listen on; 0 picks a free one  [default: 2575]
  --hostname ADDRESS   Address to listen on                [default: 0.0.0.0]
  --reply CODE         How to answer: aa (as the EchoDispatcher), ae or ar
                       (that code, with a text saying so; a payload that
                       is not HL7 gets a NAK, 0x15)         [default: aa]
  --save DIR           Write each message, as received, to a file in DIR
                       (created if missing) before answering it:
                       CONTROL_ID.hl7, with characters other than
                       A-Z a-z 0-9 . _ - replaced by "_"; a name already
                       taken gets -2, -3, ...; no control id:
                       no-control-id.hl7; not HL7: not-hl7.bin. A message
                       that cannot be written is answered AE (NAK if not
                       HL7)
  -v, --verbose        Log at debug level (includes message bodies)
  -h, --help           Show this help

TLS (on when --cert and --key are given, which --ca and --verify-peer
need; TLS 1.2 or later):
  --cert FILE          Server certificate chain, PEM
  --key FILE           Its private key, PEM
  --ca FILE            CA certificate, PEM, that client certificates must
                       chain to; repeat the flag for several
  --verify-peer        Require a client certificate signed by a --ca CA
                       (mutual TLS); needs --ca

Client restrictions:
  --allowed-clients LIST
                       Only these clients may connect: a comma-separated
                       list; the flag may be repeated. Without
                       --verify-peer: IP addresses, CIDR ranges
                       (10.0.0.0/8) or host names (resolved at start and
                       every 60 s). With --verify-peer: certificate names
                       (subject CN or SAN DNS name, any case). Others are
                       closed and logged: "Failed to verify client ..."

Protocol (see docs/protocol.md: MLLP release 2, character sets, batches,
enhanced acknowledgment mode):
  --mllp-release N     1, or 2: answer each frame with a commit frame
                       (0x06) before its reply              [default: 1]
  --charset NAME       Charset (HL7 table 0211, such as 8859/1) of
                       messages whose MSH-18 is empty  [default: UTF-8]
  --charset-override NAME
                       Read every message in this charset, whatever its
                       MSH-18 says (for senders that get it wrong)
  --strict-charset     Answer AR, naming the charset and byte offset, to
                       a message whose bytes do not decode (or whose
                       MSH-18 is not in table 0211), instead of reading
                       them as U+FFFD
  --allow-wide         Accept UTF-16 and UTF-32 messages (refused with AR
                       otherwise: their bytes can be MLLP framing bytes)
  --batches MODE       each: the messages of an FHS/BHS batch are
                       answered (and --save'd) one by one; whole: the
                       batch is one message (--save writes one file,
                       BHS-11.hl7). Either way the reply is one response
                       batch                              [default: each]
  --batch-acks WHICH   errors: the response batch carries only the ACKs
                       of messages not accepted; all: one per message
                                                        [default: errors]
  --original-mode      Answer every message with one ACK, even when MSH-15
                       or MSH-16 ask for enhanced mode (commit ACK CA,
                       then the application ACK)

Limits and timeouts (a connection past one is closed with a log line):
  --max-frame-bytes N  Largest message accepted, bytes  [default: 10485760]
  --max-connections N  Most connections open at once      [default: 1024]
                       (and at most 64 from one address)
  --idle-timeout MS    Close a connection silent this long between
                       messages; 0 never                [default: 3600000]
  --frame-timeout MS   Close a connection whose message takes longer to
                       arrive; 0 never                   [default: 120000]
  --stop-deadline MS   On SIGINT/SIGTERM, how long messages in flight get
                       to be answered before connections are closed
                                                           [default: 5000]

Durable delivery (needs Deno KV: run Deno with --unstable-kv):
  --store PATH         Store each HL7 message, with its ACK, in a Deno KV
                       file (or a KV Connect URL) before acknowledging it;
                       a resend gets the stored ACK and is not dispatched
                       again; the answer is then made from the store
                       (not with --reply ae|ar or --save)
  --store nats://HOST:PORT[,HOST:PORT...]
                       Store in a NATS JetStream stream instead (a quorum
                       of its replicas has it before the ACK goes out);
                       receivers given the same servers, stream and
                       consumer share the dispatching. With NATS down or
                       unreachable, messages are answered AE
${NATS_USAGE}
Without --cert and --key the receiver speaks plain TCP and logs a warning.
It never starts weaker than asked: a setting it cannot enforce is exit 2.

Exit status:
  0  stopped by SIGINT or SIGTERM
  2  bad flags; the address cannot be listened on; --save DIR cannot be
     created; or a certificate or key cannot be read, --verify-peer has no
     --ca, or no --allowed-clients entry can be used (every host name fails
     to resolve)
`;

/** Runs `mllp listen`. */
export async function listen(
  args: string[],
  io: Io,
  options: CommandOptions,
): Promise<number> {
  const flags = parseFlags(args, {
    boolean: ["help", "verbose", "verify-peer", ...LISTEN_MODE_FLAGS.boolean],
    string: [
      "port",
      "hostname",
      "cert",
      "key",
      "max-frame-bytes",
      "max-connections",
      "idle-timeout",
      "frame-timeout",
      "stop-deadline",
      "store",
      "reply",
      "save",
      ...NATS_FLAGS,
      ...LISTEN_MODE_FLAGS.string,
    ],
    collect: ["ca", "allowed-clients"],
  });
  if (flags.help) {
    write(io.stdout, LISTEN_USAGE);
    return 0;
  }
  if (flags._.length > 0) {
    throw new UsageError(`Unexpected argument "${flags._[0]}"`);
  }
  const port = portFlag(flags, "port", 0) ?? 2575;
  const hostname = stringFlag(flags, "hostname") ?? "0.0.0.0";
  const tls = listenTlsFlags(flags);
  const allowedClients = allowedClientsFlag(flags);
  const maxFrameBytes = numberFlag(flags, "max-frame-bytes", 1);
  const maxConnections = numberFlag(flags, "max-connections", 1);
  const idleTimeout = numberFlag(flags, "idle-timeout", 0);
  const frameTimeout = numberFlag(flags, "frame-timeout", 0);
  const deadline = numberFlag(flags, "stop-deadline", 0);
  const storePath = stringFlag(flags, "store");
  const reply = replyFlag(flags);
  const saveDir = stringFlag(flags, "save");
  const mllpRelease = mllpReleaseFlag(flags);
  const charset = charsetFlags(flags);
  const batches = batchesFlag(flags);
  const batchAcks = batchAcksFlag(flags);
  const enhancedMode = flags["original-mode"] === true ? false : undefined;
  if (storePath !== undefined && batches === "whole") {
    throw new UsageError(
      "--batches whole cannot be used with --store (each message of a batch is stored on its own)",
    );
  }
  if (storePath !== undefined && (reply !== "aa" || saveDir !== undefined)) {
    throw new UsageError(
      `${
        saveDir !== undefined ? "--save" : "--reply"
      } cannot be used with --store (the store answers before the dispatcher runs)`,
    );
  }
  const nats = storePath !== undefined && isNatsUrl(storePath)
    ? natsOptions(storePath, flags, "--store")
    : undefined;
  const strayNatsFlag = NATS_FLAGS.find((name) => flags[name] !== undefined);
  if (nats === undefined && strayNatsFlag !== undefined) {
    throw new UsageError(
      `--${strayNatsFlag} needs --store nats://host:port`,
    );
  }
  let dispatcher = replyDispatcher(reply);
  if (saveDir !== undefined) {
    try {
      await Deno.mkdir(saveDir, { recursive: true });
    } catch (error) {
      write(
        io.stderr,
        `error: Cannot create --save directory "${saveDir}": ${
          describeError(error)
        }\n`,
      );
      return 2;
    }
    dispatcher = savingDispatcher(new MessageSaver(saveDir), dispatcher);
  }
  using _logging = setupLogging(io.stderr, flags.verbose === true, options);
  let store: MessageStore & { close(): Promise<void> } | undefined;
  if (storePath !== undefined) {
    try {
      store = nats
        ? await (await import("./nats_store.ts")).openNatsStore(nats)
        : await (await import("./durable.ts")).openStore(storePath);
    } catch (error) {
      write(io.stderr, `error: ${describeError(error)}\n`);
      return 2;
    }
  }
  let receiver: Receiver;
  try {
    receiver = await Receiver.start({
      port,
      hostname,
      dispatcher,
      tls,
      allowedClients,
      maxFrameBytes,
      maxConnections,
      idleTimeout,
      frameTimeout,
      store,
      mllpRelease,
      charset,
      batches,
      batchAcks,
      enhancedMode,
    });
  } catch (error) {
    await store?.close();
    // The library's start-up errors say what is wrong ("Cannot read the
    // TLS certificate ...", "Cannot use allowed clients ..."); a socket
    // error needs the address.
    const message = describeError(error);
    write(
      io.stderr,
      `error: ${
        message.startsWith("Cannot ")
          ? message
          : `Cannot listen on ${formatAddress({ hostname, port })}: ${message}`
      }\n`,
    );
    return 2;
  }
  try {
    write(io.stderr, `listening on ${formatAddress(receiver.address)}\n`);
    const reason = await untilStopped(options.signal);
    logger.info("Received {reason}; stopping", { reason });
  } finally {
    // In-flight messages get their replies, up to the deadline.
    await receiver.stop({ deadline });
    await store?.close();
  }
  return 0;
}

function replyFlag(flags: Flags): ReplyMode {
  const value = stringFlag(flags, "reply")?.toLowerCase() ?? "aa";
  if (value !== "aa" && value !== "ae" && value !== "ar") {
    throw new UsageError(
      `Invalid --reply "${stringFlag(flags, "reply")}": expected aa, ae or ar`,
    );
  }
  return value;
}

/**
 * The receiver's TLS settings from `--cert`, `--key`, `--ca` and
 * `--verify-peer`, or `undefined` for plain TCP. A TLS flag without a
 * certificate and key is a usage error rather than a silent plain-TCP
 * start; `--verify-peer` without `--ca` is left to the library to refuse.
 */
function listenTlsFlags(flags: Flags): ReceiverTlsOptions | undefined {
  const cert = stringFlag(flags, "cert");
  const key = stringFlag(flags, "key");
  const ca = listFlag(flags, "ca");
  const verifyPeer = flags["verify-peer"] === true;
  if (cert === undefined && key === undefined) {
    if (verifyPeer) {
      throw new UsageError("--verify-peer needs TLS: give --cert and --key");
    }
    if (ca.length > 0) {
      throw new UsageError("--ca needs TLS: give --cert and --key");
    }
    return undefined;
  }
  if (cert === undefined) throw new UsageError("--key needs --cert");
  if (key === undefined) throw new UsageError("--cert needs --key");
  return { cert, key, ca, verifyPeer };
}

/** The `--allowed-clients` entries, comma-separated and/or repeated. */
function allowedClientsFlag(flags: Flags): string[] | undefined {
  const values = listFlag(flags, "allowed-clients");
  if (values.length === 0) return undefined;
  const entries = values
    .flatMap((value) => value.split(","))
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  if (entries.length === 0) {
    // An empty list would let every client in: refuse instead.
    throw new UsageError("Missing value for --allowed-clients");
  }
  return entries;
}

/** Resolves on SIGINT, SIGTERM or abort; removes its listeners after. */
async function untilStopped(signal?: AbortSignal): Promise<string> {
  const { promise, resolve } = Promise.withResolvers<string>();
  const installed: [Deno.Signal, () => void][] = [];
  for (const name of ["SIGINT", "SIGTERM"] as const) {
    const handler = () => resolve(name);
    try {
      Deno.addSignalListener(name, handler);
      installed.push([name, handler]);
    } catch {
      // Not supported on this platform (SIGTERM on Windows).
    }
  }
  const onAbort = () => resolve("abort");
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await promise;
  } finally {
    for (const [name, handler] of installed) {
      Deno.removeSignalListener(name, handler);
    }
    signal?.removeEventListener("abort", onAbort);
  }
}

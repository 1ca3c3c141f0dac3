/**
 * Client restrictions for a receiver: the `allowedClients` option. An
 * {@linkcode AllowList} holds IP addresses, CIDR ranges and host names
 * (address mode) or certificate names (certificate mode) and answers, per
 * accepted connection, whether the peer may talk to the receiver.
 *
 * Host names are resolved when the list is built and again on a timer, so a
 * client whose address changes keeps working. The list fails closed: when
 * none of its entries can be used (every host name fails to resolve), or
 * one is malformed, building it throws instead of letting everyone in.
 *
 * @example Allow a subnet, a loopback address and a host name
 * ```ts
 * import { AllowList } from "@x/mllp/allow";
 * import { assert } from "@std/assert";
 *
 * using allowed = await AllowList.create(
 *   ["10.0.0.0/8", "::1", "lab.example"],
 *   { mode: "address", resolve: () => Promise.resolve(["192.0.2.7"]) },
 * );
 * assert(allowed.allowsAddress("10.20.30.40"));
 * assert(allowed.allowsAddress("0:0:0:0:0:0:0:1"));
 * assert(allowed.allowsAddress("::ffff:192.0.2.7"));
 * assert(!allowed.allowsAddress("192.0.2.8"));
 * ```
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import { getLogger } from "@logtape/logtape";

import {
  formatIp,
  type Ip,
  IPV4_LOOPBACK,
  IPV4_MAPPED,
  IPV6_ALL,
  IPV6_LOOPBACK,
  isHostName,
  parseIp,
  parseIpv4,
  parseIpv6,
} from "./_ip.ts";

const logger = getLogger(["mllp", "allow"]);

/**
 * How often host names are resolved again by default, in milliseconds.
 *
 * @example Resolve host names less often than the default
 * ```ts
 * import { AllowList, DEFAULT_REFRESH_INTERVAL } from "@x/mllp/allow";
 * import { assert, assertEquals } from "@std/assert";
 *
 * assertEquals(DEFAULT_REFRESH_INTERVAL, 60_000);
 * using allowed = await AllowList.create(["lab.example"], {
 *   mode: "address",
 *   refreshInterval: 5 * DEFAULT_REFRESH_INTERVAL,
 *   resolve: () => Promise.resolve(["192.0.2.7"]),
 * });
 * assert(allowed.allowsAddress("192.0.2.7"));
 * ```
 */
export const DEFAULT_REFRESH_INTERVAL = 60_000;

/** The longest interval a timer accepts, in milliseconds. */
const MAX_INTERVAL = 2_147_483_647;

/**
 * How an {@linkcode AllowList} reads its entries.
 *
 * - `"address"`: entries are IP addresses, CIDR ranges or host names,
 *   matched against the peer's IP address. Use it on plain TCP, or on TLS
 *   without peer verification.
 * - `"certificate"`: entries are certificate names, matched against the
 *   subject CN and SAN DNS names of a verified client certificate.
 *
 * @example Choose the mode from the transport
 * ```ts
 * import { AllowList, type AllowMode } from "@x/mllp/allow";
 * import { assert } from "@std/assert";
 *
 * const verifiesClients = true; // TLS with client certificates
 * const mode: AllowMode = verifiesClients ? "certificate" : "address";
 * using allowed = await AllowList.create(["lab-client"], { mode });
 * assert(allowed.allowsCertificate(["lab-client"]));
 * ```
 */
export type AllowMode = "address" | "certificate";

/**
 * Options for {@linkcode AllowList.create}.
 *
 * @example Inject a resolver
 * ```ts
 * import { AllowList, type AllowListOptions } from "@x/mllp/allow";
 * import { assert } from "@std/assert";
 *
 * const options: AllowListOptions = {
 *   mode: "address",
 *   resolve: (hostname) =>
 *     Promise.resolve(hostname === "lab.example" ? ["192.0.2.7"] : []),
 * };
 * using allowed = await AllowList.create(["lab.example"], options);
 * assert(allowed.allowsAddress("192.0.2.7"));
 * assert(!allowed.allowsAddress("192.0.2.8"));
 * ```
 */
export interface AllowListOptions {
  /**
   * `"address"`: entries are IP addresses, CIDR ranges or host names (no
   * peer verification). `"certificate"`: entries are certificate names.
   */
  mode: AllowMode;
  /**
   * How often host names are resolved again, in milliseconds. The timer
   * does not keep the process alive. Only address-mode lists with at least
   * one host name run it.
   *
   * @default {60000}
   */
  refreshInterval?: number;
  /**
   * Resolves a host name to its IP addresses. A rejection, or an empty
   * array, means the name cannot be resolved this time. Inject one in
   * tests.
   *
   * @default {resolveHostname}
   */
  resolve?: (hostname: string) => Promise<string[]>;
}

/**
 * Options for {@linkcode AllowListError}.
 *
 * @example Keep the resolver error as the cause
 * ```ts
 * import { AllowListError, type AllowListErrorOptions } from "@x/mllp/allow";
 * import { assertEquals } from "@std/assert";
 *
 * const cause = new Error("ENOTFOUND lab.example");
 * const options: AllowListErrorOptions = { entries: ["lab.example"], cause };
 * const error = new AllowListError("No usable entry", options);
 * assertEquals(error.entries, ["lab.example"]);
 * assertEquals(error.cause, cause);
 * ```
 */
export interface AllowListErrorOptions extends ErrorOptions {
  /** The host names that did not resolve, lower-cased, without a final dot. */
  entries: readonly string[];
}

/**
 * An allow list has entries but none of them can be used: every host name
 * failed to resolve. {@linkcode AllowList.create} throws it so a receiver
 * fails closed at start rather than letting every client in. The resolver
 * errors are the `cause` (an `AggregateError` when there are several).
 *
 * @example Inspect the entries that failed
 * ```ts
 * import { AllowListError } from "@x/mllp/allow";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new AllowListError("No usable entry", { entries: ["lab.example"] });
 * assertEquals(error.entries, ["lab.example"]);
 * ```
 */
export class AllowListError extends Error {
  /** The host names that did not resolve, lower-cased, without a final dot. */
  readonly entries: readonly string[];

  /**
   * Constructs a new error.
   *
   * @param message What happened.
   * @param options The unusable entries and an optional cause.
   */
  constructor(message: string, options: AllowListErrorOptions) {
    super(message, options);
    this.name = "AllowListError";
    this.entries = options.entries;
  }
}

/**
 * Resolves a host name to its IP addresses with the system resolver
 * (`getaddrinfo`, through `node:dns`), so `/etc/hosts` is honoured. It is
 * the default `resolve` option of {@linkcode AllowList.create}.
 *
 * @param hostname The host name.
 * @returns The addresses, IPv4 and IPv6, in the resolver's order.
 * @throws {Error} When the name cannot be resolved (`ENOTFOUND` and kin).
 *
 * @example Resolve localhost
 * ```ts
 * import { resolveHostname } from "@x/mllp/allow";
 * import { assert } from "@std/assert";
 *
 * const addresses = await resolveHostname("localhost");
 * assert(addresses.some((a) => a === "127.0.0.1" || a === "::1"));
 * ```
 */
export async function resolveHostname(hostname: string): Promise<string[]> {
  const results = await lookup(hostname, { all: true });
  return results.map((result) => result.address);
}

/** A CIDR range of IPv4 addresses. */
interface Ipv4Range {
  readonly base: number;
  readonly mask: number;
}

/** A CIDR range of IPv6 addresses. */
interface Ipv6Range {
  readonly base: bigint;
  readonly mask: bigint;
}

/** A host name entry and what it resolved to last. */
interface HostName {
  /** The name as passed to the resolver. */
  readonly hostname: string;
  /** The last known addresses; empty until it first resolves. */
  addresses: readonly Ip[];
}

/** A host name that failed to resolve. */
interface Failure {
  readonly name: HostName;
  readonly error: unknown;
}

/**
 * The clients a receiver lets in (its `allowedClients` option).
 *
 * In address mode, entries are IPv4 addresses (`10.1.2.3`), IPv6 addresses
 * (`::1`, `2001:db8::1`, `[::1]`), CIDR ranges (`10.0.0.0/8`,
 * `2001:db8::/32`) or host names. Addresses are compared as numbers, not
 * text, so every textual form of an address matches; IPv4-mapped IPv6
 * addresses (`::ffff:10.1.2.3`) count as their IPv4 address; IPv6 zone ids
 * (`%eth0`) are ignored. Host bits of a CIDR range are ignored
 * (`10.1.2.3/8` is `10.0.0.0/8`). `localhost` always allows both
 * `127.0.0.1` and `::1`, plus whatever it resolves to. Host names are
 * resolved at {@linkcode AllowList.create} and again every
 * `refreshInterval`; a name that fails to resolve keeps its last known
 * addresses. Surrounding whitespace in entries is ignored.
 *
 * In certificate mode, entries are certificate names, compared with the
 * subject CN and SAN DNS names of the client's certificate, ignoring case.
 * Wildcards are not expanded.
 *
 * An empty list means no restriction: it allows every client.
 *
 * @example Restrict by address
 * ```ts
 * import { AllowList } from "@x/mllp/allow";
 * import { assert } from "@std/assert";
 *
 * using allowed = await AllowList.create(["192.0.2.0/24", "2001:db8::1"], {
 *   mode: "address",
 * });
 * assert(allowed.allowsAddress("192.0.2.255"));
 * assert(allowed.allowsAddress("[2001:DB8:0::1]"));
 * assert(!allowed.allowsAddress("198.51.100.1"));
 * ```
 *
 * @example Restrict by certificate name
 * ```ts
 * import { AllowList } from "@x/mllp/allow";
 * import { assert } from "@std/assert";
 *
 * using allowed = await AllowList.create(["client-1"], { mode: "certificate" });
 * assert(allowed.allowsCertificate(["Client-1"]));
 * assert(!allowed.allowsCertificate(["client-2", "localhost"]));
 * ```
 */
export class AllowList implements Disposable {
  /** The entries as given. */
  readonly entries: readonly string[];
  /** How the entries are read. */
  readonly mode: AllowMode;

  readonly #unrestricted: boolean;
  readonly #resolve: (hostname: string) => Promise<string[]>;
  readonly #refreshInterval: number;
  readonly #certificates = new Set<string>();
  readonly #staticV4 = new Set<number>();
  readonly #staticV6 = new Set<bigint>();
  readonly #v4Ranges: Ipv4Range[] = [];
  readonly #v6Ranges: Ipv6Range[] = [];
  readonly #hostNames = new Map<string, HostName>();
  #v4 = new Set<number>();
  #v6 = new Set<bigint>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #pending = 0;

  private constructor(entries: readonly string[], options: AllowListOptions) {
    if (!Array.isArray(entries)) {
      throw new TypeError("Cannot create allow list: entries must be an array");
    }
    const { mode } = options;
    if (mode !== "address" && mode !== "certificate") {
      throw new TypeError(
        `Cannot create allow list: unknown mode "${String(mode)}"`,
      );
    }
    const interval = options.refreshInterval ?? DEFAULT_REFRESH_INTERVAL;
    if (
      typeof interval !== "number" || !Number.isFinite(interval) ||
      interval <= 0 || interval > MAX_INTERVAL
    ) {
      throw new RangeError(
        `Cannot create allow list: refreshInterval must be more than 0 and at most ${MAX_INTERVAL} ms, got ${
          String(interval)
        }`,
      );
    }
    this.entries = Object.freeze([...entries]);
    this.mode = mode;
    this.#unrestricted = entries.length === 0;
    this.#resolve = options.resolve ?? resolveHostname;
    this.#refreshInterval = interval;
    for (const entry of entries) {
      if (typeof entry !== "string") {
        throw new TypeError(
          `Cannot use allowed client ${String(entry)}: not a string`,
        );
      }
      const text = entry.trim();
      if (text === "") malformed(entry, "empty");
      if (mode === "certificate") {
        this.#certificates.add(text.toLowerCase());
      } else {
        this.#addAddressEntry(entry, text);
      }
    }
    this.#rebuild();
  }

  /**
   * Builds an allow list, resolving its host names once before it returns.
   * In address mode with host names, it starts a timer that resolves them
   * again every `refreshInterval`; {@linkcode AllowList.close} stops it.
   * An empty list means no restriction.
   *
   * Host names that fail to resolve while other entries are usable are
   * logged at warning and tried again at each refresh. When no entry at
   * all is usable, it throws, so a receiver fails closed.
   *
   * @param entries The allowed clients: addresses, ranges and host names,
   *   or certificate names, depending on the mode.
   * @param options The mode, refresh interval and resolver.
   * @returns The allow list.
   * @throws {TypeError} When an entry is malformed (not an IP address, a
   *   CIDR range or a host name, such as `10.0.0.300` or `10.0.0.0/33`), is
   *   empty, or the mode is unknown. The message names the entry.
   * @throws {RangeError} When `refreshInterval` is not more than 0 and at
   *   most 2147483647.
   * @throws {AllowListError} When the list has entries but none is usable:
   *   every host name failed to resolve.
   *
   * @example Fail closed when nothing resolves
   * ```ts
   * import { AllowList, AllowListError } from "@x/mllp/allow";
   * import { assertRejects } from "@std/assert";
   *
   * await assertRejects(
   *   () =>
   *     AllowList.create(["lab.example"], {
   *       mode: "address",
   *       resolve: () => Promise.reject(new Error("ENOTFOUND")),
   *     }),
   *   AllowListError,
   * );
   * ```
   *
   * @example An empty list allows everyone
   * ```ts
   * import { AllowList } from "@x/mllp/allow";
   * import { assert } from "@std/assert";
   *
   * using allowed = await AllowList.create([], { mode: "address" });
   * assert(allowed.allowsAddress("203.0.113.9"));
   * ```
   */
  static async create(
    entries: readonly string[],
    options: AllowListOptions,
  ): Promise<AllowList> {
    const list = new AllowList(entries, options);
    if (list.#hostNames.size === 0) return list;
    const failures = await list.#resolveAll();
    if (list.#v4.size + list.#v6.size === 0 && !list.#hasRanges()) {
      const errors = failures.map((failure) => failure.error);
      const names = failures.map((failure) => failure.name.hostname);
      throw new AllowListError(
        `Cannot use allowed clients: no entry is usable, as ${
          names.map((name) => `"${name}"`).join(", ")
        } did not resolve`,
        {
          entries: names,
          cause: errors.length === 1
            ? errors[0]
            : new AggregateError(errors, "Cannot resolve host names"),
        },
      );
    }
    list.#warn(failures);
    const timer = setInterval(() => list.#tick(), list.#refreshInterval);
    Deno.unrefTimer(timer);
    list.#timer = timer;
    return list;
  }

  /**
   * Tells whether a peer's IP address is allowed. IPv4, IPv6 in any
   * textual form (with or without brackets or a zone id) and IPv4-mapped
   * IPv6 are accepted.
   *
   * @param ip The peer's IP address, as `Deno.NetAddr.hostname` gives it.
   * @returns `true` when the list is empty or the address matches an
   *   entry; `false` otherwise, for text that is not an IP address, and in
   *   certificate mode.
   *
   * @example Match an IPv4-mapped peer against an IPv4 range
   * ```ts
   * import { AllowList } from "@x/mllp/allow";
   * import { assert } from "@std/assert";
   *
   * using allowed = await AllowList.create(["127.0.0.0/8"], { mode: "address" });
   * assert(allowed.allowsAddress("::ffff:127.0.0.1"));
   * ```
   */
  allowsAddress(ip: string): boolean {
    if (this.#unrestricted) return true;
    if (this.mode !== "address") return false;
    const address = parseIp(ip);
    if (typeof address === "number") {
      if (this.#v4.has(address)) return true;
      for (const range of this.#v4Ranges) {
        if (((address & range.mask) >>> 0) === range.base) return true;
      }
      return false;
    }
    if (typeof address === "bigint") {
      if (this.#v6.has(address)) return true;
      for (const range of this.#v6Ranges) {
        if ((address & range.mask) === range.base) return true;
      }
    }
    return false;
  }

  /**
   * Tells whether a client certificate is allowed: whether any of its
   * names (subject CN and SAN DNS names) is in the list, ignoring case.
   *
   * @param names The certificate's names.
   * @returns `true` when the list is empty or a name matches an entry;
   *   `false` otherwise, and in address mode.
   *
   * @example Names are compared ignoring case
   * ```ts
   * import { AllowList } from "@x/mllp/allow";
   * import { assert } from "@std/assert";
   *
   * using allowed = await AllowList.create(["mixed-case-client-cert"], {
   *   mode: "certificate",
   * });
   * assert(allowed.allowsCertificate(["MIXED-CASE-client-cert"]));
   * ```
   */
  allowsCertificate(names: readonly string[]): boolean {
    if (this.#unrestricted) return true;
    if (this.mode !== "certificate") return false;
    for (const name of names) {
      if (this.#certificates.has(name.toLowerCase())) return true;
    }
    return false;
  }

  /**
   * Resolves the host names again now; the timer calls it too. A name that
   * resolves replaces its addresses (its old ones are no longer allowed);
   * a name that fails keeps its last known addresses and is logged at
   * warning. Refreshes run one at a time, in call order.
   *
   * @returns A promise that settles when the new addresses are in use. It
   *   does not reject: resolver failures are logged.
   *
   * @example Pick up a changed address
   * ```ts
   * import { AllowList } from "@x/mllp/allow";
   * import { assert } from "@std/assert";
   *
   * let address = "192.0.2.1";
   * using allowed = await AllowList.create(["lab.example"], {
   *   mode: "address",
   *   resolve: () => Promise.resolve([address]),
   * });
   * address = "192.0.2.2";
   * await allowed.refresh();
   * assert(allowed.allowsAddress("192.0.2.2"));
   * assert(!allowed.allowsAddress("192.0.2.1"));
   * ```
   */
  refresh(): Promise<void> {
    this.#pending++;
    const run = this.#queue
      .then(() => this.#resolveAll())
      .then((failures) => this.#warn(failures))
      .finally(() => this.#pending--);
    this.#queue = run.catch(() => {});
    return run;
  }

  /**
   * Stops the refresh timer. Calling it again does nothing. The list keeps
   * answering with the addresses it knows.
   *
   * @example Close by hand
   * ```ts
   * import { AllowList } from "@x/mllp/allow";
   *
   * const allowed = await AllowList.create(["localhost"], { mode: "address" });
   * allowed.close();
   * allowed.close();
   * ```
   */
  close(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Stops the refresh timer, as {@linkcode AllowList.close}.
   *
   * @example With `using`
   * ```ts
   * import { AllowList } from "@x/mllp/allow";
   *
   * using _allowed = await AllowList.create(["localhost"], { mode: "address" });
   * ```
   */
  [Symbol.dispose](): void {
    this.close();
  }

  #addAddressEntry(entry: string, text: string): void {
    let body = text;
    if (body.startsWith("[") && body.endsWith("]") && body.includes("/")) {
      body = body.slice(1, -1);
    }
    const slash = body.indexOf("/");
    if (slash !== -1) {
      this.#addRange(entry, body.slice(0, slash), body.slice(slash + 1));
      return;
    }
    if (body.includes(":") || body.startsWith("[")) {
      const address = parseIp(body);
      if (address === undefined) {
        malformed(entry, "not a valid IPv6 address");
      }
      this.#addAddress(address);
      return;
    }
    if (/^[0-9.]+$/.test(body)) {
      const address = parseIpv4(body);
      if (address === undefined) malformed(entry, "not a valid IPv4 address");
      this.#addAddress(address);
      return;
    }
    if (!isHostName(body)) {
      malformed(entry, "not an IP address, CIDR range or host name");
    }
    const hostname = body.toLowerCase().replace(/\.$/, "");
    if (hostname === "localhost") {
      this.#staticV4.add(IPV4_LOOPBACK);
      this.#staticV6.add(IPV6_LOOPBACK);
    }
    if (!this.#hostNames.has(hostname)) {
      this.#hostNames.set(hostname, { hostname, addresses: [] });
    }
  }

  #addRange(entry: string, addressText: string, prefixText: string): void {
    let text = addressText;
    if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) {
      malformed(entry, "not a valid CIDR prefix length");
    }
    const prefix = Number(prefixText);
    if (text.includes(":")) {
      const address = parseIpv6(text);
      if (address === undefined) malformed(entry, "not a valid CIDR range");
      if (prefix > 128) malformed(entry, "prefix length must be 0 to 128");
      this.#addV6Range(address, prefix);
    } else {
      const address = parseIpv4(text);
      if (address === undefined) malformed(entry, "not a valid CIDR range");
      if (prefix > 32) malformed(entry, "prefix length must be 0 to 32");
      this.#addV4Range(address, prefix);
    }
  }

  #addAddress(address: Ip): void {
    if (typeof address === "number") this.#staticV4.add(address);
    else this.#staticV6.add(address);
  }

  #addV4Range(address: number, prefix: number): void {
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    this.#v4Ranges.push({ base: (address & mask) >>> 0, mask });
  }

  #addV6Range(address: bigint, prefix: number): void {
    const mask = (IPV6_ALL << BigInt(128 - prefix)) & IPV6_ALL;
    const base = address & mask;
    // IPv4-mapped peers are matched as IPv4, so the mapped part of an IPv6
    // range becomes an IPv4 range.
    if (prefix >= 96 && (base & ~0xffffffffn) === IPV4_MAPPED) {
      this.#addV4Range(Number(base & 0xffffffffn), prefix - 96);
      return;
    }
    if ((IPV4_MAPPED & mask) === base) this.#addV4Range(0, 0);
    this.#v6Ranges.push({ base, mask });
  }

  #hasRanges(): boolean {
    return this.#v4Ranges.length + this.#v6Ranges.length > 0;
  }

  /** Rebuilds the address sets from the static entries and host names. */
  #rebuild(): void {
    const v4 = new Set(this.#staticV4);
    const v6 = new Set(this.#staticV6);
    for (const { addresses } of this.#hostNames.values()) {
      for (const address of addresses) {
        if (typeof address === "number") v4.add(address);
        else v6.add(address);
      }
    }
    this.#v4 = v4;
    this.#v6 = v6;
  }

  /** Resolves every host name, then swaps the address sets once. */
  async #resolveAll(): Promise<Failure[]> {
    const names = [...this.#hostNames.values()];
    const results = await Promise.allSettled(
      names.map((name) => this.#resolveOne(name.hostname)),
    );
    const failures: Failure[] = [];
    results.forEach((result, i) => {
      const name = names[i];
      if (result.status === "rejected") {
        failures.push({ name, error: result.reason });
        return;
      }
      logger.debug("Allowed client {hostname} resolves to {addresses}", {
        hostname: name.hostname,
        addresses: result.value.map(formatIp),
      });
      name.addresses = result.value;
    });
    this.#rebuild();
    return failures;
  }

  async #resolveOne(hostname: string): Promise<Ip[]> {
    const texts: unknown = await this.#resolve(hostname);
    if (!Array.isArray(texts)) {
      throw new TypeError(
        `Cannot resolve "${hostname}": the resolver returned no array`,
      );
    }
    const addresses: Ip[] = [];
    for (const text of texts) {
      const address = typeof text === "string" ? parseIp(text) : undefined;
      if (address === undefined) {
        logger.debug(
          "Ignoring {address} resolved for allowed client {hostname}: not an IP address",
          { address: String(text), hostname },
        );
      } else {
        addresses.push(address);
      }
    }
    if (addresses.length === 0) {
      throw new Error(`Cannot resolve "${hostname}": no addresses`);
    }
    return addresses;
  }

  #warn(failures: readonly Failure[]): void {
    for (const { name, error } of failures) {
      const { hostname } = name;
      if (name.addresses.length === 0) {
        logger.warn(
          "Cannot resolve allowed client {hostname}, it allows no address until it resolves: {error}",
          { hostname, error },
        );
      } else {
        logger.warn(
          "Cannot resolve allowed client {hostname}, keeping its last known addresses {addresses}: {error}",
          { hostname, addresses: name.addresses.map(formatIp), error },
        );
      }
    }
  }

  #tick(): void {
    // A refresh still waiting on a slow resolver is not piled onto.
    if (this.#pending > 0) return;
    this.refresh().catch((error) =>
      logger.error("Cannot refresh allowed clients: {error}", { error })
    );
  }
}

/** Throws the error for a malformed entry. */
function malformed(entry: string, reason: string): never {
  throw new TypeError(`Cannot use allowed client "${entry}": ${reason}`);
}

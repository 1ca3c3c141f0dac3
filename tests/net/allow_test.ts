/**
 * Tests for the receiver's client restrictions: address matching (exact,
 * CIDR boundaries, IPv4-mapped IPv6, brackets, zone ids, localhost), host
 * names through an injected resolver and the real one, refreshes by hand
 * and by timer, failing closed, malformed entries and certificate names.
 *
 * @module
 */

import {
  assert,
  assertEquals,
  assertFalse,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { deadline as untypedDeadline } from "@std/async/deadline";
import { configureSync, type LogRecord, resetSync } from "@logtape/logtape";
import {
  AllowList,
  AllowListError,
  type AllowListOptions,
  resolveHostname,
} from "../../src/net/allow.ts";

const deadline: <T>(promise: Promise<T>, ms: number) => Promise<T> =
  untypedDeadline;

/** Address-mode options with a resolver that knows a fixed table. */
function table(
  hosts: Record<string, string[]>,
  options: Partial<AllowListOptions> = {},
): AllowListOptions {
  return {
    mode: "address",
    resolve: (hostname) =>
      hostname in hosts
        ? Promise.resolve(hosts[hostname])
        : Promise.reject(new Error(`getaddrinfo ENOTFOUND ${hostname}`)),
    ...options,
  };
}

/** A resolver whose answers the test changes between refreshes. */
class FakeResolver {
  /** Addresses per host name; a missing name fails to resolve. */
  hosts = new Map<string, string[]>();
  /** Every host name asked for, in order. */
  calls: string[] = [];

  /** The resolver function to inject. */
  resolve = (hostname: string): Promise<string[]> => {
    this.calls.push(hostname);
    const addresses = this.hosts.get(hostname);
    return addresses === undefined
      ? Promise.reject(new Error(`getaddrinfo ENOTFOUND ${hostname}`))
      : Promise.resolve(addresses);
  };
}

/** Runs `fn` with `["mllp", "allow"]` logs at warning and up captured. */
async function withLogs(
  fn: (records: LogRecord[]) => Promise<void>,
): Promise<void> {
  const records: LogRecord[] = [];
  configureSync({
    reset: true,
    sinks: { memory: (record: LogRecord) => records.push(record) },
    loggers: [
      {
        category: ["mllp", "allow"],
        lowestLevel: "warning",
        sinks: ["memory"],
      },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  try {
    await fn(records);
  } finally {
    resetSync();
  }
}

/** Asserts which of `ips` the list allows. */
function assertAllows(
  list: AllowList,
  allowed: string[],
  denied: string[],
): void {
  for (const ip of allowed) {
    assert(list.allowsAddress(ip), `Expected ${ip} to be allowed`);
  }
  for (const ip of denied) {
    assertFalse(list.allowsAddress(ip), `Expected ${ip} to be denied`);
  }
}

Deno.test("AllowList.allowsAddress() matches IPv4 addresses exactly", async () => {
  using list = await AllowList.create(["10.1.2.3", "192.0.2.1"], {
    mode: "address",
  });
  assertAllows(list, ["10.1.2.3", "192.0.2.1"], [
    "10.1.2.4",
    "10.1.2.2",
    "192.0.2.10",
    // Leading zeros are not read as the same address (nor as octal).
    "010.1.2.3",
    "10.1.2",
    "10.1.2.3.4",
    "",
    "not an address",
  ]);
});

Deno.test("AllowList.allowsAddress() compares IPv6 addresses, not text", async () => {
  using list = await AllowList.create(["2001:db8::1", "::1"], {
    mode: "address",
  });
  assertAllows(list, [
    "2001:db8::1",
    "2001:DB8::1",
    "2001:0db8:0000:0000:0000:0000:0000:0001",
    "2001:db8:0:0::0:1",
    "::1",
    "0:0:0:0:0:0:0:1",
    "::0:1",
  ], [
    "2001:db8::2",
    "2001:db8:1::1",
    "::2",
    "::",
    "2001:db8::1::",
    "2001:db8:::1",
    "1:2:3:4:5:6:7:8:9",
    "2001:db8::g",
    "0.0.0.1",
  ]);
});

Deno.test("AllowList.allowsAddress() accepts brackets in entries and peers", async () => {
  using list = await AllowList.create(["[::1]", "[2001:db8::/32]"], {
    mode: "address",
  });
  assertAllows(
    list,
    ["::1", "[::1]", "[0:0:0:0:0:0:0:1]", "[2001:db8::7]", "2001:db8::7"],
    ["[::2]", "[::1", "::1]", "[127.0.0.1]"],
  );
  using cidr = await AllowList.create(["[2001:db8::]/32"], {
    mode: "address",
  });
  assertAllows(cidr, ["2001:db8:ffff::1"], ["2001:db9::"]);
});

Deno.test("AllowList.allowsAddress() ignores IPv6 zone ids", async () => {
  using plain = await AllowList.create(["fe80::1"], { mode: "address" });
  assertAllows(
    plain,
    ["fe80::1", "fe80::1%eth0", "[fe80::1%eth0]", "fe80::1%25"],
    ["fe80::2%eth0", "fe80::1%"],
  );
  using zoned = await AllowList.create(["fe80::1%eth0"], { mode: "address" });
  assertAllows(zoned, ["fe80::1", "fe80::1%eth1"], ["fe80::2"]);
});

Deno.test("AllowList.allowsAddress() matches IPv4 CIDR ranges up to their boundaries", async () => {
  using list = await AllowList.create(
    ["10.0.0.0/8", "192.168.1.128/25", "127.0.0.1/32", "172.16.0.0/12"],
    { mode: "address" },
  );
  assertAllows(list, [
    "10.0.0.0",
    "10.255.255.255",
    "10.128.0.1",
    "192.168.1.128",
    "192.168.1.255",
    "127.0.0.1",
    "172.16.0.0",
    "172.31.255.255",
  ], [
    "9.255.255.255",
    "11.0.0.0",
    "192.168.1.127",
    "192.168.2.0",
    "127.0.0.0",
    "127.0.0.2",
    "172.15.255.255",
    "172.32.0.0",
  ]);
});

Deno.test("AllowList.allowsAddress() handles /0 and host bits in IPv4 ranges", async () => {
  using all = await AllowList.create(["0.0.0.0/0"], { mode: "address" });
  assertAllows(all, ["0.0.0.0", "255.255.255.255", "::ffff:1.2.3.4"], [
    "::1",
    "2001:db8::1",
  ]);
  // Host bits are dropped: 10.1.2.3/8 is 10.0.0.0/8.
  using hostBits = await AllowList.create(["10.1.2.3/8"], {
    mode: "address",
  });
  assertAllows(hostBits, ["10.0.0.0", "10.200.0.1"], ["11.1.2.3"]);
});

Deno.test("AllowList.allowsAddress() matches IPv6 CIDR ranges up to their boundaries", async () => {
  using list = await AllowList.create(
    ["2001:db8::/32", "fd00:1:2:3::/64", "2001:db8:ffff:ffff::100/120"],
    { mode: "address" },
  );
  assertAllows(list, [
    "2001:db8::",
    "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:DB8:1::1",
    "fd00:1:2:3::",
    "fd00:1:2:3:ffff:ffff:ffff:ffff",
  ], [
    "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:db9::",
    "fd00:1:2:2:ffff:ffff:ffff:ffff",
    "fd00:1:2:4::",
    "10.0.0.1",
  ]);
  using narrow = await AllowList.create(["2001:db8::100/120", "::1/128"], {
    mode: "address",
  });
  assertAllows(narrow, ["2001:db8::100", "2001:db8::1ff", "::1"], [
    "2001:db8::ff",
    "2001:db8::200",
    "::",
    "::2",
  ]);
  using all = await AllowList.create(["::/0"], { mode: "address" });
  // ::/0 holds the IPv4-mapped range, so IPv4 peers are in it too.
  assertAllows(all, ["::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"], []);
  assert(all.allowsAddress("203.0.113.1"));
});

Deno.test("AllowList.allowsAddress() matches IPv4-mapped IPv6 peers as IPv4", async () => {
  using list = await AllowList.create(["127.0.0.1", "10.0.0.0/8"], {
    mode: "address",
  });
  assertAllows(list, [
    "::ffff:127.0.0.1",
    "::FFFF:127.0.0.1",
    "[::ffff:127.0.0.1]",
    "::ffff:7f00:1",
    "0:0:0:0:0:ffff:7f00:0001",
    "::ffff:10.0.0.0",
    "::ffff:10.255.255.255",
    "::ffff:a01:203",
  ], [
    "::ffff:127.0.0.2",
    "::ffff:11.0.0.0",
    "::ffff:9.255.255.255",
    // IPv4-compatible and NAT64 forms are other IPv6 addresses.
    "::127.0.0.1",
    "64:ff9b::127.0.0.1",
    "::fffe:127.0.0.1",
  ]);
});

Deno.test("AllowList.allowsAddress() reads IPv4-mapped entries as IPv4", async () => {
  using list = await AllowList.create(
    ["::ffff:192.0.2.1", "::ffff:10.0.0.0/104"],
    { mode: "address" },
  );
  assertAllows(list, [
    "192.0.2.1",
    "::ffff:192.0.2.1",
    "10.0.0.0",
    "10.255.255.255",
    "::ffff:10.1.1.1",
  ], ["192.0.2.2", "11.0.0.0", "9.255.255.255"]);
});

Deno.test("AllowList: localhost allows both loopbacks whatever it resolves to", async () => {
  for (
    const addresses of [["127.0.0.1"], ["::1"], ["127.0.0.1", "127.0.1.1"]]
  ) {
    using list = await AllowList.create(
      ["localhost"],
      table({ localhost: addresses }),
    );
    assertAllows(
      list,
      ["127.0.0.1", "::1", "::ffff:127.0.0.1", ...addresses],
      ["127.0.0.2", "::2"],
    );
  }
  // Even when it does not resolve, and whatever its case.
  await withLogs(async (records) => {
    using list = await AllowList.create(["LOCALHOST."], table({}));
    assertAllows(list, ["127.0.0.1", "[::1]"], ["127.0.0.2"]);
    assertEquals(records.length, 1);
    assertEquals(records[0].level, "warning");
    assertEquals(records[0].properties.hostname, "localhost");
  });
});

Deno.test("AllowList: the default resolver resolves localhost", async () => {
  using list = await AllowList.create(["localhost"], { mode: "address" });
  assertAllows(list, ["127.0.0.1", "::1"], ["192.0.2.1"]);
  const addresses: string[] = await resolveHostname("localhost");
  assert(
    addresses.some((address) => address === "127.0.0.1" || address === "::1"),
    `localhost resolved to ${addresses.join(", ")}`,
  );
});

Deno.test("AllowList: host names resolve through the injected resolver", async () => {
  const resolver = new FakeResolver();
  resolver.hosts.set("lab.example", ["192.0.2.7", "2001:db8::7"]);
  resolver.hosts.set("mapped.example", ["::ffff:198.51.100.9"]);
  using list = await AllowList.create(
    ["Lab.Example.", "mapped.example", "lab.example"],
    { mode: "address", resolve: resolver.resolve },
  );
  // Names are asked once each, lower-cased, without the root dot.
  assertEquals(resolver.calls.sort(), ["lab.example", "mapped.example"]);
  assertAllows(list, [
    "192.0.2.7",
    "::ffff:192.0.2.7",
    "2001:db8::7",
    "2001:db8:0::7",
    "198.51.100.9",
  ], ["192.0.2.8", "2001:db8::8", "127.0.0.1", "::1"]);
  assertEquals(list.entries, ["Lab.Example.", "mapped.example", "lab.example"]);
  assertEquals(list.mode, "address");
});

Deno.test("AllowList: a name that fails at create is logged and picked up on refresh", async () => {
  const resolver = new FakeResolver();
  await withLogs(async (records) => {
    using list = await AllowList.create(["10.9.9.9", "late.example"], {
      mode: "address",
      resolve: resolver.resolve,
    });
    assertAllows(list, ["10.9.9.9"], ["192.0.2.30"]);
    assertEquals(records.length, 1);
    assertEquals(records[0].level, "warning");
    assertEquals(records[0].category, ["mllp", "allow"]);
    assertEquals(records[0].properties.hostname, "late.example");

    resolver.hosts.set("late.example", ["192.0.2.30"]);
    await list.refresh();
    assertAllows(list, ["10.9.9.9", "192.0.2.30"], ["192.0.2.31"]);
    assertEquals(records.length, 1);
  });
});

Deno.test("AllowList.refresh() drops addresses a name no longer resolves to", async () => {
  const resolver = new FakeResolver();
  resolver.hosts.set("moving.example", ["192.0.2.1", "2001:db8::1"]);
  using list = await AllowList.create(["moving.example"], {
    mode: "address",
    resolve: resolver.resolve,
  });
  assertAllows(list, ["192.0.2.1", "2001:db8::1"], ["192.0.2.2"]);

  resolver.hosts.set("moving.example", ["192.0.2.2"]);
  await list.refresh();
  assertAllows(list, ["192.0.2.2"], ["192.0.2.1", "2001:db8::1"]);
});

Deno.test("AllowList.refresh() keeps the last known addresses of a name that fails", async () => {
  const resolver = new FakeResolver();
  resolver.hosts.set("flaky.example", ["192.0.2.40"]);
  await withLogs(async (records) => {
    using list = await AllowList.create(["flaky.example"], {
      mode: "address",
      resolve: resolver.resolve,
    });
    assertEquals(records.length, 0);

    resolver.hosts.delete("flaky.example");
    await list.refresh();
    assertAllows(list, ["192.0.2.40"], ["192.0.2.41"]);
    assertEquals(records.length, 1);
    assertEquals(records[0].level, "warning");
    assertEquals(records[0].properties.hostname, "flaky.example");
    assertEquals(records[0].properties.addresses, ["192.0.2.40"]);

    // An empty answer, or one with no IP address in it, is a failure too.
    for (const answer of [[], ["not-an-ip"]]) {
      resolver.hosts.set("flaky.example", answer);
      await list.refresh();
      assertAllows(list, ["192.0.2.40"], []);
    }
    assertEquals(records.length, 3);
  });
});

Deno.test("AllowList.refresh() runs one refresh at a time, in call order", async () => {
  const resolver = new FakeResolver();
  resolver.hosts.set("order.example", ["192.0.2.1"]);
  using list = await AllowList.create(["order.example"], {
    mode: "address",
    resolve: resolver.resolve,
  });
  resolver.hosts.set("order.example", ["192.0.2.2"]);
  const first = list.refresh();
  resolver.hosts.set("order.example", ["192.0.2.3"]);
  const second = list.refresh();
  await Promise.all([first, second]);
  assertAllows(list, ["192.0.2.3"], ["192.0.2.1", "192.0.2.2"]);
});

Deno.test("AllowList.create() fails closed when no entry is usable", async () => {
  const one: AllowListError = await assertRejects(
    () => AllowList.create(["nowhere.example"], table({})),
    AllowListError,
    '"nowhere.example" did not resolve',
  );
  assertEquals(one.name, "AllowListError");
  assertEquals(one.entries, ["nowhere.example"]);
  assertInstanceOf(one.cause, Error);
  assertStringIncludes(String(one.cause), "ENOTFOUND nowhere.example");

  const two: AllowListError = await assertRejects(
    () => AllowList.create(["a.example", "b.example"], table({})),
    AllowListError,
    '"a.example", "b.example" did not resolve',
  );
  assertEquals(two.entries, ["a.example", "b.example"]);
  assertInstanceOf(two.cause, AggregateError);

  // Empty and address-free answers do not make a name usable.
  await assertRejects(
    () =>
      AllowList.create(
        ["empty.example", "junk.example"],
        table({ "empty.example": [], "junk.example": ["junk", "10.0.0.300"] }),
      ),
    AllowListError,
  );
  // Nor does a resolver that throws instead of rejecting.
  await assertRejects(
    () =>
      AllowList.create(["throws.example"], {
        mode: "address",
        resolve: () => {
          throw new Error("Boom");
        },
      }),
    AllowListError,
  );
});

Deno.test("AllowList.create() throws TypeError naming a malformed entry", async () => {
  const cases: [string, string][] = [
    ["10.0.0.300", "not a valid IPv4 address"],
    ["10.0.0.0/33", "prefix length must be 0 to 32"],
    ["2001:db8::/129", "prefix length must be 0 to 128"],
    ["10.0.0.0/", "not a valid CIDR prefix length"],
    ["10.0.0.0/08", "not a valid CIDR prefix length"],
    ["10.0.0.0/8/8", "not a valid CIDR prefix length"],
    ["10.0.0.0/-1", "not a valid CIDR prefix length"],
    ["10.0.0/8", "not a valid CIDR range"],
    ["example.com/24", "not a valid CIDR range"],
    ["fe80::%eth0/64", "not a valid CIDR range"],
    ["1.2.3", "not a valid IPv4 address"],
    ["010.0.0.1", "not a valid IPv4 address"],
    ["1.2.3.4.", "not a valid IPv4 address"],
    ["10.0.0.1:2575", "not a valid IPv6 address"],
    ["2001:db8:::1", "not a valid IPv6 address"],
    ["1:2:3:4:5:6:7:8:9", "not a valid IPv6 address"],
    ["1:2:3:4:5:6:7:8::", "not a valid IPv6 address"],
    ["[10.0.0.1]", "not a valid IPv6 address"],
    ["[::1", "not a valid IPv6 address"],
    ["fe80::1%", "not a valid IPv6 address"],
    ["bad_host!", "not an IP address, CIDR range or host name"],
    ["a..b", "not an IP address, CIDR range or host name"],
    ["-lead.example", "not an IP address, CIDR range or host name"],
    [`${"a".repeat(64)}.example`, "not an IP address, CIDR range or host name"],
    ["", "empty"],
    ["   ", "empty"],
  ];
  for (const [entry, reason] of cases) {
    await assertRejects(
      () => AllowList.create([entry], table({})),
      TypeError,
      `Cannot use allowed client "${entry}": ${reason}`,
    );
  }
  // One malformed entry fails the list, even among good ones.
  await assertRejects(
    () => AllowList.create(["127.0.0.1", "10.0.0.300"], { mode: "address" }),
    TypeError,
    '"10.0.0.300"',
  );
});

Deno.test("AllowList.create() accepts every valid address form", async () => {
  using list = await AllowList.create([
    " 10.0.0.1 ",
    "::",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:1.2.3.4",
    "0.0.0.0/0",
    "255.255.255.255/32",
    "::/128",
    "_srv.example",
    "host-1.example.",
  ], table({ "_srv.example": ["192.0.2.5"], "host-1.example": ["192.0.2.6"] }));
  assertAllows(list, [
    "10.0.0.1",
    "::",
    "1:2:3:4:5:6:7:0",
    "0:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:102:304",
    "192.0.2.5",
    "192.0.2.6",
  ], ["1:2:3:4:5:6:7:8"]);
  assertEquals(list.entries[0], " 10.0.0.1 ");
});

Deno.test("AllowList.create() checks its options", async () => {
  for (const refreshInterval of [0, -1, NaN, Infinity, 2 ** 31]) {
    await assertRejects(
      () => AllowList.create(["localhost"], table({}, { refreshInterval })),
      RangeError,
      "refreshInterval",
    );
  }
  await assertRejects(
    () =>
      AllowList.create(["localhost"], {
        mode: "ip" as unknown as "address",
      }),
    TypeError,
    'unknown mode "ip"',
  );
});

Deno.test("AllowList: certificate names are compared ignoring case", async () => {
  const resolver = new FakeResolver();
  using list = await AllowList.create(
    ["mixed-case-client-cert", "client-1"],
    { mode: "certificate", resolve: resolver.resolve },
  );
  assert(list.allowsCertificate(["MIXED-CASE-client-cert"]));
  assert(list.allowsCertificate(["client-1"]));
  assert(list.allowsCertificate(["other", "CLIENT-1"]));
  assertFalse(list.allowsCertificate(["client-2"]));
  assertFalse(list.allowsCertificate(["mixed-case-client"]));
  assertFalse(list.allowsCertificate([]));
  // Certificate mode never resolves and never matches addresses.
  assertEquals(resolver.calls, []);
  assertFalse(list.allowsAddress("127.0.0.1"));
  assertEquals(list.mode, "certificate");

  using byAddress = await AllowList.create(["127.0.0.1"], {
    mode: "address",
  });
  assertFalse(byAddress.allowsCertificate(["127.0.0.1"]));
});

Deno.test("AllowList: an empty list allows everyone", async () => {
  const resolver = new FakeResolver();
  for (const mode of ["address", "certificate"] as const) {
    using list = await AllowList.create([], {
      mode,
      resolve: resolver.resolve,
    });
    assert(list.allowsAddress("203.0.113.9"));
    assert(list.allowsAddress("2001:db8::9"));
    assert(list.allowsCertificate(["anyone"]));
    assert(list.allowsCertificate([]));
    assertEquals(list.entries, []);
  }
  assertEquals(resolver.calls, []);
});

Deno.test("AllowList.close() clears the refresh timer and can be called again", async () => {
  // A leaked interval would fail this test under the op sanitizer.
  const list = await AllowList.create(
    ["timer.example"],
    table({ "timer.example": ["192.0.2.50"] }),
  );
  list.close();
  list.close();
  list[Symbol.dispose]();
  // It still answers with what it knows.
  assert(list.allowsAddress("192.0.2.50"));
});

Deno.test("AllowList: the refresh timer resolves host names again", async () => {
  let calls = 0;
  const { promise: refreshed, resolve: done } = Promise.withResolvers<void>();
  const list = await AllowList.create(["tick.example"], {
    mode: "address",
    refreshInterval: 20,
    resolve: () => {
      calls++;
      if (calls === 3) done();
      return Promise.resolve([`192.0.2.${calls}`]);
    },
  });
  try {
    assertEquals(calls, 1);
    await deadline(refreshed, 10_000);
    assert(calls >= 3);
    assert(list.allowsAddress("192.0.2.3"));
    assertFalse(list.allowsAddress("192.0.2.1"));
  } finally {
    list.close();
  }
});

Deno.test("AllowList: the refresh timer does not keep the process alive", async () => {
  const module = new URL("../../src/net/allow.ts", import.meta.url).href;
  const code = `
    const { AllowList } = await import(${JSON.stringify(module)});
    const list = await AllowList.create(["lab.example"], {
      mode: "address",
      refreshInterval: 10,
      resolve: () => Promise.resolve(["192.0.2.1"]),
    });
    console.log(list.allowsAddress("192.0.2.1"));
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    cwd: new URL("../..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // If the timer held the process, this bound ends it and the test fails.
  const timer = setTimeout(() => child.kill(), 30_000);
  try {
    const output = await child.output();
    const stderr = new TextDecoder().decode(output.stderr);
    assertEquals(output.code, 0, stderr);
    assertEquals(new TextDecoder().decode(output.stdout).trim(), "true");
  } finally {
    clearTimeout(timer);
  }
});

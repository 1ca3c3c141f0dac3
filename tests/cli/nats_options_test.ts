/**
 * `src/cli/nats_options.ts`: NATS URL lists and the `--nats-*` flags, read
 * without loading NATS.
 *
 * @module
 */

import { assertEquals, assertThrows } from "@std/assert";
import { UsageError } from "../../src/cli/common.ts";
import { isNatsUrl, natsOptions } from "../../src/cli/nats_options.ts";

Deno.test("nats options: servers with default ports, tls://, credentials in the URL", () => {
  assertEquals(
    natsOptions("nats://a:4222, b ,tls://c:7422,[::1]", { _: [] }, "--store"),
    {
      servers: [
        "nats://a:4222",
        "nats://b:4222",
        "tls://c:7422",
        "nats://[::1]:4222",
      ],
      connection: {},
    },
  );
  assertEquals(
    natsOptions("nats://us%40r:p%3Ass@a", { _: [] }, "--store").connection,
    { user: "us@r", pass: "p:ss" },
  );
  assertEquals(
    natsOptions("nats://s3cret-token@a:4222", { _: [] }, "--store").connection,
    { token: "s3cret-token" },
  );
  assertEquals([isNatsUrl("NATS://a"), isNatsUrl("./in.sqlite")], [
    true,
    false,
  ]);
});

Deno.test("nats options: names, replicas, one credential, TLS files", () => {
  assertEquals(
    natsOptions("nats://a", {
      _: [],
      "nats-stream": "ADT_IN",
      "nats-consumer": "adt",
      "nats-replicas": "5",
      "nats-creds": "/etc/nats/user.creds",
      "nats-ca": "ca.pem",
      "nats-cert": "c.pem",
      "nats-key": "k.pem",
    }, "--store"),
    {
      servers: ["nats://a:4222"],
      stream: "ADT_IN",
      consumer: "adt",
      replicas: 5,
      connection: {
        credsFile: "/etc/nats/user.creds",
        tls: { caFile: "ca.pem", certFile: "c.pem", keyFile: "k.pem" },
      },
    },
  );
  assertEquals(
    natsOptions("nats://a", { _: [], "nats-nkey": "u.nk" }, "--store")
      .connection,
    { nkeyFile: "u.nk" },
  );
});

Deno.test("nats options: bad URLs and flags are usage errors that say what to give", () => {
  const cases: [string, Record<string, string>, string][] = [
    [
      "nats://a/x",
      {},
      'Invalid --queue "nats://a/x": "nats://a/x" is not a NATS URL (nats://host:port)',
    ],
    [
      "nats://,",
      {},
      'Invalid --queue "nats://,": "nats://" is not a NATS URL (nats://host:port)',
    ],
    [
      "nats://a",
      { "nats-user": "u" },
      "--nats-user and --nats-password go together",
    ],
    [
      "nats://a",
      { "nats-token": "t", "nats-nkey": "f" },
      "Give one NATS credential: a user and password, --nats-token, --nats-nkey or --nats-creds",
    ],
    [
      "nats://a",
      { "nats-cert": "c" },
      "--nats-cert and --nats-key go together",
    ],
    [
      "nats://a",
      { "nats-replicas": "2" },
      'Invalid --nats-replicas "2": expected 1, 3 or 5',
    ],
  ];
  for (const [url, flags, message] of cases) {
    assertThrows(
      () => natsOptions(url, { _: [], ...flags }, "--queue"),
      UsageError,
      message,
    );
  }
});

/**
 * OpenTelemetry end to end: `tests/integration/_telemetry_child.ts` runs in a child
 * Deno process with Deno's built-in exporter (`OTEL_DENO=true`) pointed at
 * an OTLP/HTTP JSON collector served here on loopback, and the test reads
 * the metrics and spans the child exported.
 *
 * @module
 */

import { assert, assertEquals } from "@std/assert";
import {
  AFTER_TIMEOUT,
  BEFORE_TIMEOUT,
  type ChildReport,
  message,
  TIMED_OUT,
} from "./_telemetry_child.ts";

const ROOT = new URL("../..", import.meta.url);
/** The longest the child may run. */
const RUN_LIMIT = 30_000;
/** The scope (meter and tracer name) the library records under. */
const SCOPE = "@x/mllp";

// ---- OTLP/JSON, as much of it as these tests read ----

/** An OTLP `AnyValue`; 64-bit integers arrive as strings. */
interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
}

interface KeyValue {
  key: string;
  value: AnyValue;
}

interface NumberDataPoint {
  attributes?: KeyValue[];
  timeUnixNano: string;
  asDouble?: number;
  asInt?: string | number;
}

interface HistogramDataPoint {
  attributes?: KeyValue[];
  timeUnixNano: string;
  count: string | number;
  sum?: number;
}

/** 1 = delta, 2 = cumulative. */
type Temporality = 1 | 2;

interface Metric {
  name: string;
  unit?: string;
  sum?: {
    dataPoints: NumberDataPoint[];
    aggregationTemporality: Temporality;
    isMonotonic?: boolean;
  };
  histogram?: {
    dataPoints: HistogramDataPoint[];
    aggregationTemporality: Temporality;
  };
}

interface Scope {
  name: string;
}

interface Resource {
  attributes?: KeyValue[];
}

interface MetricsRequest {
  resourceMetrics: {
    resource?: Resource;
    scopeMetrics: { scope: Scope; metrics: Metric[] }[];
  }[];
}

interface OtlpSpan {
  name: string;
  /** 2 = server, 3 = client. */
  kind: number;
  attributes?: KeyValue[];
  /** `code` 2 = error. */
  status?: { code?: number; message?: string };
}

interface TracesRequest {
  resourceSpans: {
    resource?: Resource;
    scopeSpans: { scope: Scope; spans: OtlpSpan[] }[];
  }[];
}

type Value = string | number | boolean;

/** Returns `value`, or fails saying what was missing. */
function present<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`Missing: ${what}`);
  return value;
}

/** What the collector received, by path. */
interface Received {
  metrics: MetricsRequest[];
  traces: TracesRequest[];
  logs: unknown[];
  other: string[];
}

function value(v: AnyValue): Value {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  throw new TypeError(`Unexpected attribute value ${JSON.stringify(v)}`);
}

/** OTLP attributes as a plain object. */
function attributes(list: KeyValue[] = []): Record<string, Value> {
  return Object.fromEntries(list.map((kv) => [kv.key, value(kv.value)]));
}

/** A stable key for a set of attributes. */
function attributeKey(attrs: Record<string, Value>): string {
  return JSON.stringify(
    Object.entries(attrs).sort(([a], [b]) => a < b ? -1 : 1),
  );
}

function includes(
  attrs: Record<string, Value>,
  match: Record<string, Value>,
): boolean {
  return Object.entries(match).every(([k, v]) => attrs[k] === v);
}

/** Every export of the library's metric `name`. */
function metricsNamed(received: Received, name: string): Metric[] {
  return received.metrics.flatMap((request) =>
    request.resourceMetrics.flatMap((rm) =>
      rm.scopeMetrics
        .filter((sm) => sm.scope.name === SCOPE)
        .flatMap((sm) => sm.metrics.filter((m) => m.name === name))
    )
  );
}

interface Point {
  attributes: Record<string, Value>;
  time: bigint;
  value: number;
}

/**
 * The final value of each attribute set of a metric: the latest point for
 * cumulative temporality, the sum of the points for delta.
 */
function finalValues(points: Point[], temporality: Temporality): Point[] {
  const byKey = new Map<string, Point>();
  for (const point of points) {
    const key = attributeKey(point.attributes);
    const seen = byKey.get(key);
    if (!seen) byKey.set(key, { ...point });
    else if (temporality === 1) seen.value += point.value;
    else if (point.time > seen.time) byKey.set(key, { ...point });
  }
  return [...byKey.values()];
}

/** The final values of a counter or up-down counter. */
function sumPoints(received: Received, name: string): Point[] {
  const metrics = metricsNamed(received, name);
  const sums = metrics.map((m) => present(m.sum, `${name} as a sum`));
  return finalValues(
    sums.flatMap((s) =>
      s.dataPoints.map((p) => ({
        attributes: attributes(p.attributes),
        time: BigInt(p.timeUnixNano),
        value: p.asDouble ?? Number(p.asInt ?? NaN),
      }))
    ),
    sums[0]?.aggregationTemporality ?? 2,
  );
}

/** The final counts (or sums) of a histogram. */
function histogramPoints(
  received: Received,
  name: string,
  field: "count" | "sum" = "count",
): Point[] {
  const metrics = metricsNamed(received, name);
  const histograms = metrics.map((m) =>
    present(m.histogram, `${name} as a histogram`)
  );
  return finalValues(
    histograms.flatMap((h) =>
      h.dataPoints.map((p) => ({
        attributes: attributes(p.attributes),
        time: BigInt(p.timeUnixNano),
        value: Number(p[field] ?? NaN),
      }))
    ),
    histograms[0]?.aggregationTemporality ?? 2,
  );
}

/** The final total of the points whose attributes include `match`. */
function total(points: Point[], match: Record<string, Value> = {}): number {
  return points
    .filter((p) => includes(p.attributes, match))
    .reduce((sum, p) => sum + p.value, 0);
}

/** The library's spans named `name`. */
function spansNamed(received: Received, name: string): OtlpSpan[] {
  return received.traces.flatMap((request) =>
    request.resourceSpans.flatMap((rs) =>
      rs.scopeSpans
        .filter((ss) => ss.scope.name === SCOPE)
        .flatMap((ss) => ss.spans.filter((s) => s.name === name))
    )
  );
}

// ---- the collector and the child ----

/** The environment without any OpenTelemetry setting of this process. */
function cleanEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([key]) =>
      !key.startsWith("OTEL_")
    ),
  );
}

/**
 * Serves an OTLP/HTTP JSON collector on loopback, runs the child with the
 * environment `env(port)` gives, and returns what the child printed and
 * what the collector received.
 */
async function runChild(
  env: (port: number) => Record<string, string>,
): Promise<{ report: ChildReport; received: Received }> {
  const received: Received = { metrics: [], traces: [], logs: [], other: [] };
  await using server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
  }, async (request) => {
    const path = new URL(request.url).pathname;
    const body: unknown = request.method === "POST"
      ? await request.json()
      : undefined;
    if (path === "/v1/metrics") received.metrics.push(body as MetricsRequest);
    else if (path === "/v1/traces") received.traces.push(body as TracesRequest);
    else if (path === "/v1/logs") received.logs.push(body);
    else received.other.push(`${request.method} ${path}`);
    return Response.json({});
  });

  const limit = new AbortController();
  const timer = setTimeout(() => limit.abort(), RUN_LIMIT);
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--config",
        "deno.json",
        "tests/integration/_telemetry_child.ts",
      ],
      cwd: ROOT,
      clearEnv: true,
      env: { ...cleanEnv(), NO_COLOR: "1", ...env(server.addr.port) },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: limit.signal,
    }).output();
  } finally {
    clearTimeout(timer);
  }
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assertEquals(
    output.code,
    0,
    `The child failed (${output.signal ?? output.code}):\n${stdout}\n${stderr}`,
  );
  return { report: JSON.parse(stdout.trim()), received };
}

const ALL_IDS = [...BEFORE_TIMEOUT, TIMED_OUT, AFTER_TIMEOUT];
/** The sends that got a reply, each with its ACK code. */
const ANSWERED = [...BEFORE_TIMEOUT, AFTER_TIMEOUT];

function codeOf(id: string): string {
  return id.slice(0, 2);
}

function countOf(code: string): number {
  return ANSWERED.filter((id) => codeOf(id) === code).length;
}

function bytesOf(ids: string[]): number {
  return ids.reduce((sum, id) => sum + message(id).length, 0);
}

Deno.test("OpenTelemetry: metrics and spans reach an OTLP collector with OTEL_DENO=true", async (t) => {
  const { report, received } = await runChild((port) => ({
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_METRIC_EXPORT_INTERVAL: "500",
    OTEL_SERVICE_NAME: "mllp-test",
  }));

  await t.step("the child exchanged what it was meant to", () => {
    assertEquals(
      report.acks,
      Object.fromEntries([
        ...ANSWERED.map((id) => [id, codeOf(id)]),
        [TIMED_OUT, "timeout"],
      ]),
    );
    // The timed-out message was still dispatched (and answered AA, too late).
    assertEquals(report.dispatched, {
      AA: countOf("AA") + 1,
      AR: countOf("AR"),
      AE: countOf("AE"),
    });
    assertEquals(
      [report.opened, report.closed, report.reconnecting, report.timeouts],
      [2, 2, 2, 1],
    );
    assertEquals(received.other, []);
    assert(received.metrics.length > 0, "no metrics were posted");
    assert(received.traces.length > 0, "no traces were posted");
  });

  await t.step("the resource names the service", () => {
    const services = received.metrics.flatMap((r) =>
      r.resourceMetrics.map((rm) =>
        attributes(rm.resource?.attributes)["service.name"]
      )
    );
    assertEquals([...new Set(services)], ["mllp-test"]);
  });

  await t.step(
    "mllp.client.messages counts replies by outcome and ACK code",
    () => {
      const points = sumPoints(received, "mllp.client.messages");
      assertEquals(
        points.map((p) => p.attributes).sort((a, b) =>
          attributeKey(a) < attributeKey(b) ? -1 : 1
        ),
        [
          { "hl7.ack_code": "AA", "mllp.outcome": "accept" },
          { "hl7.ack_code": "AE", "mllp.outcome": "error" },
          { "hl7.ack_code": "AR", "mllp.outcome": "reject" },
        ],
      );
      assertEquals(total(points, { "hl7.ack_code": "AA" }), countOf("AA"));
      assertEquals(total(points, { "hl7.ack_code": "AR" }), countOf("AR"));
      assertEquals(total(points, { "hl7.ack_code": "AE" }), countOf("AE"));
      // The timed-out send has no reply, so it is not counted here.
      assertEquals(total(points), ANSWERED.length);
    },
  );

  await t.step("mllp.client.round_trip has one sample per reply", () => {
    const points = histogramPoints(received, "mllp.client.round_trip");
    assertEquals(
      metricsNamed(received, "mllp.client.round_trip")[0].unit,
      "ms",
    );
    assertEquals(total(points, { "mllp.outcome": "accept" }), countOf("AA"));
    assertEquals(total(points, { "mllp.outcome": "reject" }), countOf("AR"));
    assertEquals(total(points, { "mllp.outcome": "error" }), countOf("AE"));
  });

  await t.step(
    "mllp.client.timeouts and mllp.client.errors count the timeout",
    () => {
      assertEquals(total(sumPoints(received, "mllp.client.timeouts")), 1);
      const errors = sumPoints(received, "mllp.client.errors");
      assertEquals(errors.map((p) => p.attributes), [
        { "error.type": "ReplyTimeoutError" },
      ]);
      assertEquals(total(errors), 1);
    },
  );

  await t.step(
    "mllp.client.reconnects counts every reconnection, at once or after a wait",
    () => {
      // The reconnection right after the timeout is made at once (a
      // `reconnecting` event with delayMs 0); the drop when the receiver
      // stops schedules one after a wait. Both count.
      assertEquals(total(sumPoints(received, "mllp.client.reconnects")), 2);
    },
  );

  await t.step("mllp.receiver.messages counts dispatches by ACK code", () => {
    const points = sumPoints(received, "mllp.receiver.messages");
    assertEquals(
      total(points, {
        "mllp.kind": "hl7",
        "hl7.ack_code": "AA",
        "mllp.failed": false,
      }),
      countOf("AA") + 1,
    );
    assertEquals(
      total(points, {
        "mllp.kind": "hl7",
        "hl7.ack_code": "AR",
        "mllp.failed": false,
      }),
      countOf("AR"),
    );
    assertEquals(
      total(points, {
        "mllp.kind": "hl7",
        "hl7.ack_code": "AE",
        "mllp.failed": true,
      }),
      countOf("AE"),
    );
    assertEquals(total(points), ALL_IDS.length);
    assertEquals(
      total(histogramPoints(received, "mllp.receiver.dispatch.duration"), {
        "mllp.kind": "hl7",
      }),
      ALL_IDS.length,
    );
  });

  await t.step("mllp.receiver.connections goes back to 0", () => {
    const [metric] = metricsNamed(received, "mllp.receiver.connections");
    assertEquals(metric.sum?.isMonotonic, false);
    assertEquals(total(sumPoints(received, "mllp.receiver.connections")), 0);
  });

  await t.step("mllp.frame.size samples each side and direction", () => {
    assertEquals(metricsNamed(received, "mllp.frame.size")[0].unit, "By");
    const points = histogramPoints(received, "mllp.frame.size");
    assertEquals(
      total(points, { "mllp.side": "client", "mllp.direction": "sent" }),
      ANSWERED.length,
    );
    assertEquals(
      total(points, { "mllp.side": "client", "mllp.direction": "received" }),
      ANSWERED.length,
    );
    assertEquals(
      total(points, { "mllp.side": "receiver", "mllp.direction": "received" }),
      ALL_IDS.length,
    );
    // The sizes themselves: the messages are ASCII, one byte a character.
    const sums = histogramPoints(received, "mllp.frame.size", "sum");
    assertEquals(
      total(sums, { "mllp.side": "client", "mllp.direction": "sent" }),
      bytesOf(ANSWERED),
    );
    assertEquals(
      total(sums, { "mllp.side": "receiver", "mllp.direction": "received" }),
      bytesOf(ALL_IDS),
    );
  });

  await t.step("spans: one mllp send and one mllp dispatch per message", () => {
    const sends = spansNamed(received, "mllp send");
    const dispatches = spansNamed(received, "mllp dispatch");
    const ids = (spans: OtlpSpan[]) =>
      spans.map((s) => attributes(s.attributes)["hl7.control_id"]).sort();
    assertEquals(ids(sends), [...ALL_IDS].sort());
    assertEquals(ids(dispatches), [...ALL_IDS].sort());
    assert(sends.every((s) => s.kind === 3), "mllp send is not a client span");
    assert(
      dispatches.every((s) => s.kind === 2),
      "mllp dispatch is not a server span",
    );

    const byId = (spans: OtlpSpan[], id: string) => {
      const span = present(
        spans.find((s) => attributes(s.attributes)["hl7.control_id"] === id),
        `the span of ${id}`,
      );
      return { span, attrs: attributes(span.attributes) };
    };
    const accepted = byId(sends, "AA-1");
    assertEquals(accepted.attrs["hl7.ack_code"], "AA");
    assertEquals(accepted.attrs["hl7.message_type"], "ADT^A01^ADT_A01");
    assertEquals(byId(sends, "AR-1").attrs["hl7.ack_code"], "AR");

    const timedOut = byId(sends, TIMED_OUT);
    assertEquals(timedOut.span.status?.code, 2);
    assertEquals(timedOut.attrs["hl7.ack_code"], undefined);

    const failed = byId(dispatches, "AE-1");
    assertEquals(failed.span.status?.code, 2);
    assertEquals(failed.span.status?.message, "Cannot store AE-1");
    assertEquals(failed.attrs["hl7.ack_code"], "AE");
  });
});

Deno.test("OpenTelemetry: nothing is posted without OTEL_DENO", async () => {
  const { report, received } = await runChild((port) => ({
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_METRIC_EXPORT_INTERVAL: "500",
    OTEL_SERVICE_NAME: "mllp-test",
  }));
  assertEquals(report.acks[AFTER_TIMEOUT], "AA");
  assertEquals(received, { metrics: [], traces: [], logs: [], other: [] });
});

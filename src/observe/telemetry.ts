/**
 * OpenTelemetry for MLLP: counters, histograms and spans recorded through
 * `@opentelemetry/api`. Without an OpenTelemetry SDK the API is a no-op and
 * this costs nothing; with Deno's built-in exporter (`OTEL_DENO=true`) the
 * numbers are exported with no other setup.
 *
 * | instrument | kind | attributes |
 * | --- | --- | --- |
 * | `mllp.client.messages` | counter | `mllp.outcome`, `hl7.ack_code` |
 * | `mllp.client.round_trip` | histogram (ms) | `mllp.outcome` |
 * | `mllp.client.reconnects` | counter | |
 * | `mllp.client.timeouts` | counter | |
 * | `mllp.client.errors` | counter | `error.type` |
 * | `mllp.receiver.messages` | counter | `mllp.kind`, `hl7.ack_code`, `mllp.failed` |
 * | `mllp.receiver.dispatch.duration` | histogram (ms) | `mllp.kind` |
 * | `mllp.receiver.connections` | up-down counter | |
 * | `mllp.receiver.rejections` | counter | `mllp.reason` |
 * | `mllp.receiver.framing_errors` | counter | `mllp.problem` |
 * | `mllp.frame.size` | histogram (By) | `mllp.side`, `mllp.direction` |
 *
 * Spans: `mllp send` (client, one per send) and `mllp dispatch` (receiver,
 * one per message), with `hl7.control_id`, `hl7.message_type` and
 * `hl7.ack_code`.
 *
 * @module
 */

import {
  type Attributes,
  createNoopMeter,
  metrics,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

/** The name of this library's meter and tracer. */
export const METER_NAME = "@x/mllp";

/** This library's meter: every instrument it records with. */
export const meter = metrics.getMeter(METER_NAME, "0.1.0");
const tracer = trace.getTracer(METER_NAME, "0.1.0");

/**
 * Whether metrics are recorded at all: without an OpenTelemetry SDK (or
 * Deno's exporter) when this module loaded, the meter is the API's no-op
 * one, and recording only builds attribute objects for nothing.
 */
const measuring = meter.constructor !== createNoopMeter().constructor;

/**
 * Whether spans are recorded: asked at each span, since an SDK may
 * register its tracer provider after this module loaded.
 */
function tracing(): boolean {
  const provider = trace.getTracerProvider() as { getDelegate?(): object };
  const delegate = provider.getDelegate ? provider.getDelegate() : provider;
  return delegate.constructor.name !== "NoopTracerProvider";
}

const instruments = {
  clientMessages: meter.createCounter("mllp.client.messages", {
    description: "Messages sent by clients, by outcome and ACK code",
  }),
  roundTrip: meter.createHistogram("mllp.client.round_trip", {
    description: "Time from writing a message to reading its reply",
    unit: "ms",
  }),
  reconnects: meter.createCounter("mllp.client.reconnects", {
    description: "Reconnection attempts scheduled by clients",
  }),
  timeouts: meter.createCounter("mllp.client.timeouts", {
    description: "Sends whose reply did not arrive in time",
  }),
  clientErrors: meter.createCounter("mllp.client.errors", {
    description: "Sends that failed, by error type",
  }),
  receiverMessages: meter.createCounter("mllp.receiver.messages", {
    description: "Messages dispatched by receivers, by kind and ACK code",
  }),
  dispatchDuration: meter.createHistogram("mllp.receiver.dispatch.duration", {
    description: "Time a dispatcher took to answer",
    unit: "ms",
  }),
  connections: meter.createUpDownCounter("mllp.receiver.connections", {
    description: "Open receiver connections",
  }),
  rejections: meter.createCounter("mllp.receiver.rejections", {
    description: "Connections refused by the allow-list or the TLS handshake",
  }),
  framingErrors: meter.createCounter("mllp.receiver.framing_errors", {
    description: "Oversize frames, junk between frames and resyncs",
  }),
  frameSize: meter.createHistogram("mllp.frame.size", {
    description: "Sizes of MLLP payloads",
    unit: "By",
  }),
};

/** Records one finished client send. */
export function recordClientSend(
  outcome: string,
  ackCode: string | undefined,
  roundTripMs: number,
  sentBytes: number,
  receivedBytes: number,
): void {
  if (!measuring) return;
  const attributes: Attributes = { "mllp.outcome": outcome };
  if (ackCode) attributes["hl7.ack_code"] = ackCode;
  instruments.clientMessages.add(1, attributes);
  instruments.roundTrip.record(roundTripMs, { "mllp.outcome": outcome });
  instruments.frameSize.record(sentBytes, {
    "mllp.side": "client",
    "mllp.direction": "sent",
  });
  instruments.frameSize.record(receivedBytes, {
    "mllp.side": "client",
    "mllp.direction": "received",
  });
}

/** Records a client send that failed. */
export function recordClientError(errorType: string): void {
  if (!measuring) return;
  instruments.clientErrors.add(1, { "error.type": errorType });
  if (errorType === "ReplyTimeoutError") instruments.timeouts.add(1);
}

/** Records a scheduled reconnection. */
export function recordReconnect(): void {
  if (!measuring) return;
  instruments.reconnects.add(1);
}

/** Records one dispatched message. */
export function recordDispatch(
  kind: string,
  ackCode: string | undefined,
  failed: boolean,
  ms: number,
  bytes: number,
): void {
  if (!measuring) return;
  const attributes: Attributes = { "mllp.kind": kind, "mllp.failed": failed };
  if (ackCode) attributes["hl7.ack_code"] = ackCode;
  instruments.receiverMessages.add(1, attributes);
  instruments.dispatchDuration.record(ms, { "mllp.kind": kind });
  instruments.frameSize.record(bytes, {
    "mllp.side": "receiver",
    "mllp.direction": "received",
  });
}

/** Records a receiver connection opening (+1) or closing (-1). */
export function recordConnection(delta: 1 | -1): void {
  if (!measuring) return;
  instruments.connections.add(delta);
}

/** Records a connection refused by the allow-list or the handshake. */
export function recordRejection(reason: string): void {
  if (!measuring) return;
  instruments.rejections.add(1, { "mllp.reason": reason });
}

/** Records a framing error on a receiver connection. */
export function recordFramingError(problem: string): void {
  if (!measuring) return;
  instruments.framingErrors.add(1, { "mllp.problem": problem });
}

/** Starts the span of one client send, when spans are recorded. */
export function startSendSpan(
  address: string,
  controlId: string | undefined,
  messageType: string | undefined,
): Span | undefined {
  if (!tracing()) return undefined;
  const attributes: Attributes = { "server.address": address };
  if (controlId !== undefined) attributes["hl7.control_id"] = controlId;
  if (messageType !== undefined) attributes["hl7.message_type"] = messageType;
  return tracer.startSpan("mllp send", { kind: SpanKind.CLIENT, attributes });
}

/** Starts the span of one dispatch, when spans are recorded. */
export function startDispatchSpan(
  peer: string,
  controlId: string | undefined,
  messageType: string | undefined,
): Span | undefined {
  if (!tracing()) return undefined;
  const attributes: Attributes = { "client.address": peer };
  if (controlId !== undefined) attributes["hl7.control_id"] = controlId;
  if (messageType !== undefined) attributes["hl7.message_type"] = messageType;
  return tracer.startSpan("mllp dispatch", {
    kind: SpanKind.SERVER,
    attributes,
  });
}

/** Ends a span, marking it failed when there is an error. */
export function endSpan(
  span: Span | undefined,
  ackCode: string | undefined,
  error?: unknown,
): void {
  if (span === undefined) return;
  if (ackCode) span.setAttribute("hl7.ack_code", ackCode);
  if (error !== undefined) {
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: error instanceof Error ? error.message : String(error),
    });
    if (error instanceof Error) span.recordException(error);
  }
  span.end();
}

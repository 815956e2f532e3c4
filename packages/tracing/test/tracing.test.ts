import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  activeTraceId,
  activeTraceparent,
  detached,
  extractTraceContext,
  inSpan,
  registerTracing,
  startTracing,
  traceLogFields,
  traceparentContext,
  type Tracing,
  tracingConfigured,
  withContext,
} from '../src/index.js';

let tracing: Tracing | undefined;
afterEach(async () => {
  await tracing?.shutdown();
  tracing = undefined;
});

describe('tracingConfigured', () => {
  it('is on only when the standard variables name an OTLP endpoint', () => {
    expect(tracingConfigured({})).toBe(false);
    expect(tracingConfigured({ OTEL_SERVICE_NAME: 'x' })).toBe(false);
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318' })).toBe(true);
    expect(
      tracingConfigured({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://otel:4318/v1/traces' }),
    ).toBe(true);
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318' };
    expect(tracingConfigured({ ...endpoint, OTEL_SDK_DISABLED: 'true' })).toBe(false);
    expect(tracingConfigured({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' })).toBe(false);
  });

  it('registers nothing without an endpoint: spans are not recorded', async () => {
    expect(startTracing('test', {})).toBeUndefined();
    await inSpan('nothing', {}, () => {
      expect(activeTraceId()).toBeUndefined();
      expect(activeTraceparent()).toBeUndefined();
      expect(traceLogFields()).toEqual({});
      return Promise.resolve();
    });
  });
});

describe('startTracing', () => {
  it('exports spans over OTLP http/protobuf to the configured endpoint', async () => {
    const received: { url?: string; type?: string; body: Buffer }[] = [];
    const collector = createServer((request: IncomingMessage, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        received.push({
          url: request.url,
          type: request.headers['content-type'],
          body: Buffer.concat(chunks),
        });
        response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = collector.address() as AddressInfo;
      // The exporter reads its endpoint from the process's environment.
      vi.stubEnv('OTEL_EXPORTER_OTLP_ENDPOINT', `http://127.0.0.1:${port}`);
      tracing = startTracing('exporter-test');
      expect(tracing).toBeDefined();
      await inSpan('exported-span', {}, () => Promise.resolve());
      await tracing!.shutdown();
      tracing = undefined;
      expect(received).toHaveLength(1);
      expect(received[0]!.url).toBe('/v1/traces');
      expect(received[0]!.type).toBe('application/x-protobuf');
      expect(received[0]!.body.includes('exported-span')).toBe(true);
      expect(received[0]!.body.includes('exporter-test')).toBe(true);
    } finally {
      vi.unstubAllEnvs();
      collector.close();
    }
  });
});

describe('spans', () => {
  it('nests, records failures, and carries the trace through a traceparent', async () => {
    const exporter = new InMemorySpanExporter();
    tracing = registerTracing('span-test', [new SimpleSpanProcessor({ exporter })]);

    let traceparent: string | undefined;
    let traceId: string | undefined;
    await inSpan('outer', {}, async () => {
      traceId = activeTraceId();
      traceparent = activeTraceparent();
      expect(traceLogFields().trace_id).toBe(traceId);
      await expect(inSpan('inner', {}, () => Promise.reject(new Error('boom')))).rejects.toThrow(
        'boom',
      );
      detached(() => expect(activeTraceId()).toBeUndefined());
    });
    expect(traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));

    // Another process reads the traceparent back: its span joins the same trace.
    await withContext(traceparentContext(traceparent), () =>
      inSpan('consumer', {}, () => Promise.resolve(expect(activeTraceId()).toBe(traceId))),
    );
    const headers = new Map([['traceparent', traceparent!]]);
    await withContext(
      extractTraceContext((key) => headers.get(key)),
      () => inSpan('rpc', {}, () => Promise.resolve(expect(activeTraceId()).toBe(traceId))),
    );

    const spans = new Map(exporter.getFinishedSpans().map((span) => [span.name, span]));
    const outer = spans.get('outer')!;
    const inner = spans.get('inner')!;
    expect(inner.parentSpanContext?.spanId).toBe(outer.spanContext().spanId);
    expect(inner.status.code).toBe(2);
    expect(inner.events.map((event) => event.name)).toEqual(['exception']);
    expect(spans.get('consumer')!.parentSpanContext?.spanId).toBe(outer.spanContext().spanId);
    expect(spans.get('rpc')!.spanContext().traceId).toBe(traceId);
  });
});

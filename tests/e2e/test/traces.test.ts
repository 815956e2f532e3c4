import { randomBytes } from 'node:crypto';
import { EnvironmentStatus, ExecutionStatus, Runtime } from '@assist-tee/client';
import { registerTracing, SpanKind, type Tracing } from '@assist-tee/tracing';
import { fromJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { handlerModules, useTestStack } from '../src/index.js';

// Registered before the stack starts, for this file's process: every span the services record
// lands here, as an OTLP exporter would send it.
const exporter = new InMemorySpanExporter();
let tracing: Tracing;
beforeAll(() => {
  tracing = registerTracing('assist-tee-e2e', [new SimpleSpanProcessor({ exporter })]);
});
afterAll(async () => {
  await tracing.shutdown();
});

const spansOf = (traceId: string) =>
  exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);

/** The names of `span`'s ancestors among `spans`, nearest first. */
function ancestry(span: ReadableSpan, spans: ReadableSpan[]): string[] {
  const byId = new Map(spans.map((each) => [each.spanContext().spanId, each]));
  const names: string[] = [];
  for (let at = byId.get(span.parentSpanContext?.spanId ?? ''); at;) {
    names.push(at.name);
    at = byId.get(at.parentSpanContext?.spanId ?? '');
  }
  return names;
}

/** A caller's own trace: the traceparent it sends. */
function callerTrace() {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

describe('traces', () => {
  const tee = useTestStack();

  it('follow one Execute from the RPC into the sandbox, and on to the execution.finished consumer', async () => {
    const caller = callerTrace();
    const client = await tee.clientOf('traces', {
      interceptors: [
        (next) => (request) => {
          request.header.set('traceparent', caller.traceparent);
          return next(request);
        },
      ],
    });
    const { environment } = await client.environments.createEnvironment({
      ...handlerModules('console.log("in the sandbox");\nreturn 7;'),
      runtime: Runtime.DENO,
    });
    const environmentId = environment!.id;
    try {
      await vi.waitFor(
        async () => {
          const { environment: current } = await client.environments.getEnvironment({
            id: environmentId,
          });
          expect(current!.status).toBe(EnvironmentStatus.READY);
        },
        { timeout: 60_000, interval: 100 },
      );
      // Other limits than the pool's: a sandbox started for this call, inside its trace.
      const { execution } = await client.executions.execute({
        environmentId,
        data: fromJson(ValueSchema, 'traced'),
        limits: { memoryMb: 192 },
      });
      expect(execution!.status).toBe(ExecutionStatus.SUCCEEDED);
      // The execution keeps the trace it ran in.
      expect(execution!.traceId).toBe(caller.traceId);
      const { execution: stored } = await client.executions.getExecution({ id: execution!.id });
      expect(stored!.traceId).toBe(caller.traceId);

      // The consumer that counts executions reacts to execution.finished in the same trace.
      await vi.waitFor(
        () =>
          expect(spansOf(caller.traceId).map((span) => span.name)).toContain(
            'execution.finished process',
          ),
        { timeout: 15_000, interval: 100 },
      );
      const spans = spansOf(caller.traceId);
      const named = (name: string) => {
        const found = spans.filter((span) => span.name === name);
        expect(found, name).not.toHaveLength(0);
        return found;
      };

      const [rpc] = named('assist_tee.v1.ExecutionService/Execute');
      // The caller's span is the RPC's parent: the incoming trace context is honoured.
      expect(rpc!.parentSpanContext?.spanId).toBe(caller.spanId);
      expect(rpc!.attributes['rpc.method']).toBe('Execute');
      expect(rpc!.attributes['assist_tee.execution.id']).toBe(execution!.id);
      const rpcName = rpc!.name;
      for (const name of ['sandbox.start', 'sandbox.run', 'execution.record']) {
        expect(ancestry(named(name)[0]!, spans), name).toContain(rpcName);
      }
      const [run] = named('sandbox.run');
      expect(run!.attributes['assist_tee.environment.id']).toBe(environmentId);
      expect(run!.attributes['assist_tee.execution.status']).toBe('SUCCEEDED');
      // The run is timed from its going to the runner, once the sandbox had started.
      const [start] = named('sandbox.start');
      const nanos = ([seconds, nanoseconds]: [number, number]) => seconds * 1e9 + nanoseconds;
      expect(nanos(run!.startTime)).toBeGreaterThan(nanos(start!.startTime));
      // The environment's own record of the call, from the same trace, across the event.
      const consumed = named('execution.finished process');
      expect(consumed.every((span) => span.kind === SpanKind.CONSUMER)).toBe(true);
      expect(consumed.map((span) => span.attributes['messaging.consumer.group.name'])).toContain(
        'environments',
      );

      // The environment's setup is a trace of its own CreateEnvironment call, with its
      // database transaction and the setup itself.
      const setupTrace = exporter
        .getFinishedSpans()
        .find(
          (span) =>
            span.name === 'environment.setup' &&
            span.attributes['assist_tee.environment.id'] === environmentId,
        );
      expect(setupTrace).toBeDefined();
      const setupSpans = spansOf(setupTrace!.spanContext().traceId);
      expect(ancestry(setupTrace!, setupSpans)).toEqual([
        'assist_tee.v1.EnvironmentService/CreateEnvironment',
      ]);
      expect(
        setupSpans
          .filter((span) => span.name === 'db.transaction')
          .map((span) => ancestry(span, setupSpans).at(-1)),
      ).toContain('assist_tee.v1.EnvironmentService/CreateEnvironment');
      expect(
        setupSpans.some(
          (span) =>
            span.name === 'environment.created process' &&
            span.attributes['messaging.consumer.group.name'] !== undefined,
        ),
      ).toBe(true);
    } finally {
      await client.environments.deleteEnvironment({ id: environmentId });
    }
  });
});

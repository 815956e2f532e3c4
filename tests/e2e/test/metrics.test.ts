import { Code, ExecutionStatus, Runtime } from '@assist-tee/client';
import { fromJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it, vi } from 'vitest';
import { handlerModules, rejection, useTestStack } from '../src/index.js';

/** Every sample of a scrape, by its name and labels as written. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

// A stack of this file's own: after a known sequence of calls, /metrics moved by exactly
// what they did.
describe('metrics after a known sequence of calls', () => {
  // Sweeps only when asked, so that the count of sweeps is exact.
  const tee = useTestStack({ TEE_QUOTA_ENVIRONMENTS: '1', TEE_SWEEP_INTERVAL_MS: '3600000' });
  const scrape = async () => parse(await (await fetch(`${tee.stack.url}/metrics`)).text());

  it('count warm and cold executions, a timeout, and a quota refusal', async () => {
    const client = await tee.clientOf('metrics-sequence');
    const { environment } = await client.environments.createEnvironment({
      ...handlerModules('if (event.data === "spin") for (;;) {}\nreturn 1;'),
      runtime: Runtime.DENO,
    });
    const environmentId = environment!.id;
    try {
      // The pool's warm sandbox for it, as the metrics themselves say.
      await vi.waitFor(
        async () => expect((await scrape()).get('assist_tee_pool_ready_sandboxes')).toBe(1),
        { timeout: 30_000, interval: 200 },
      );
      const before = await scrape();
      const execute = (data: string, limits: { memoryMb?: number; timeoutMs?: number } = {}) =>
        client.executions
          .execute({ environmentId, data: fromJson(ValueSchema, data), limits })
          .then(({ execution }) => execution!);
      const warm = await execute('warm');
      // Other limits than the pool's: a sandbox of its own.
      const cold = await execute('cold', { memoryMb: 192 });
      const timedOut = await execute('spin', { memoryMb: 192, timeoutMs: 1_000 });
      expect([warm.warm, cold.warm, timedOut.status]).toEqual([
        true,
        false,
        ExecutionStatus.TIMEOUT,
      ]);
      const refused = await rejection(
        client.environments.createEnvironment({
          ...handlerModules('return 2;'),
          runtime: Runtime.DENO,
        }),
      );
      expect(refused.code).toBe(Code.ResourceExhausted);

      const after = await scrape();
      const moved = (sample: string) => (after.get(sample) ?? 0) - (before.get(sample) ?? 0);
      expect({
        warm: moved('assist_tee_executions_total{runtime="deno",status="SUCCEEDED",start="warm"}'),
        cold: moved('assist_tee_executions_total{runtime="deno",status="SUCCEEDED",start="cold"}'),
        timeout: moved('assist_tee_executions_total{runtime="deno",status="TIMEOUT",start="cold"}'),
        coldTimed: moved(
          'assist_tee_execution_duration_seconds_count{runtime="deno",start="cold"}',
        ),
        executeOk: moved(
          'assist_tee_rpc_requests_total{service="assist_tee.v1.ExecutionService",method="Execute",code="ok"}',
        ),
        refused: moved(
          'assist_tee_rpc_refusals_total{service="assist_tee.v1.EnvironmentService",method="CreateEnvironment",reason="TENANT_QUOTA_ENVIRONMENTS"}',
        ),
        hits: moved('assist_tee_pool_hits_total'),
        runs: moved('assist_tee_sandbox_run_duration_seconds_count{runtime="deno"}'),
        failedStarts: moved(
          'assist_tee_sandbox_start_duration_seconds_count{runtime="deno",outcome="failed"}',
        ),
      }).toEqual({
        warm: 1,
        cold: 1,
        timeout: 1,
        coldTimed: 2,
        executeOk: 3,
        refused: 1,
        hits: 1,
        runs: 3,
        failedStarts: 0,
      });
      // Two sandboxes started for their calls, and the pool's refills after the warm call.
      expect(
        moved('assist_tee_sandbox_start_duration_seconds_count{runtime="deno",outcome="ok"}'),
      ).toBeGreaterThanOrEqual(2);
      // All three used sandboxes are removed, in the background.
      await vi.waitFor(
        async () => {
          const removed = await scrape();
          const count = 'assist_tee_sandbox_removal_duration_seconds_count{outcome="ok"}';
          expect((removed.get(count) ?? 0) - (before.get(count) ?? 0)).toBeGreaterThanOrEqual(3);
        },
        { timeout: 15_000, interval: 200 },
      );
    } finally {
      await client.environments.deleteEnvironment({ id: environmentId });
    }
  });

  it('count setups, a dependency install, published events, consumers and a sweep', async () => {
    // A tenant per environment: the stack's quota is one each.
    const [withDependency, plain] = await Promise.all([
      tee.clientOf('metrics-dependency'),
      tee.clientOf('metrics-plain'),
    ]);
    const before = await scrape();
    const created = await Promise.all([
      withDependency.environments.createEnvironment({
        runtime: Runtime.DENO,
        mainModule: 'main.ts',
        modules: {
          'main.ts':
            'import isNumber from "is-number";\nexport const handler = () => isNumber(1);\n',
        },
        dependencies: { npm: ['is-number@7.0.0'] },
      }),
      plain.environments.createEnvironment({
        ...handlerModules('return 1;'),
        runtime: Runtime.BUN,
      }),
    ]);
    const environments = created.map(({ environment }) => environment!);
    try {
      expect(environments.map((environment) => environment.error)).toEqual(['', '']);
      const sweepStart = Date.now() / 1000;
      await tee.operator.admin.reaper.sweep({});
      const moved = (after: Map<string, number>, sample: string) =>
        (after.get(sample) ?? 0) - (before.get(sample) ?? 0);
      const published =
        'assist_tee_events_published_total{outbox="environments",type="environment.created"}';
      // The relay publishes once the outcome is written, a moment after the call returns.
      const after = await vi.waitFor(
        async () => {
          const now = await scrape();
          expect(moved(now, published)).toBe(2);
          return now;
        },
        { timeout: 10_000, interval: 100 },
      );
      expect({
        denoReady: moved(after, 'assist_tee_setups_total{runtime="deno",status="ready"}'),
        bunReady: moved(after, 'assist_tee_setups_total{runtime="bun",status="ready"}'),
        failed: moved(after, 'assist_tee_setups_total{runtime="deno",status="failed"}'),
        setupsTimed: moved(
          after,
          'assist_tee_setup_duration_seconds_count{runtime="deno",status="ready"}',
        ),
        installs: moved(
          after,
          'assist_tee_dependency_install_duration_seconds_count{runtime="deno",outcome="ok"}',
        ),
        bunInstalls: moved(
          after,
          'assist_tee_dependency_install_duration_seconds_count{runtime="bun",outcome="ok"}',
        ),
        sweeps: moved(after, 'assist_tee_reaper_sweeps_total{outcome="ok"}'),
      }).toEqual({
        denoReady: 1,
        bunReady: 1,
        failed: 0,
        setupsTimed: 1,
        installs: 1,
        bunInstalls: 0,
        sweeps: 1,
      });
      expect(
        moved(after, 'assist_tee_dependency_installed_bytes_total{runtime="deno"}'),
      ).toBeGreaterThan(0);
      expect(after.get('assist_tee_reaper_last_success_timestamp_seconds')).toBeGreaterThanOrEqual(
        Math.floor(sweepStart),
      );
      // Each service's consumer, by its role (the execution service's durable is per instance).
      for (const consumer of ['environments', 'execution', 'reaper']) {
        expect(after.get(`assist_tee_consumer_pending_events{consumer="${consumer}"}`)).toBeTypeOf(
          'number',
        );
        expect(
          after.get(`assist_tee_consumer_ack_pending_events{consumer="${consumer}"}`),
        ).toBeTypeOf('number');
      }
      expect(after.get('assist_tee_outbox_backlog_events{outbox="environments"}')).toBeTypeOf(
        'number',
      );
      expect(after.get('assist_tee_outbox_backlog_events{outbox="execution"}')).toBeTypeOf(
        'number',
      );
    } finally {
      await withDependency.environments.deleteEnvironment({ id: environments[0]!.id });
      await plain.environments.deleteEnvironment({ id: environments[1]!.id });
    }
  });
});

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
  const tee = useTestStack({ TEE_QUOTA_ENVIRONMENTS: '1' });
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
      }).toEqual({
        warm: 1,
        cold: 1,
        timeout: 1,
        coldTimed: 2,
        executeOk: 3,
        refused: 1,
        hits: 1,
      });
    } finally {
      await client.environments.deleteEnvironment({ id: environmentId });
    }
  });
});

import { fromJson } from '@bufbuild/protobuf';
import { timestampMs, ValueSchema } from '@bufbuild/protobuf/wkt';
import { Runtime } from '@assist-tee/client';
import { describe, expect, it, vi } from 'vitest';
import { sumExample, useTestStack } from '../src/index.js';

describe('usage kept from execution.finished', () => {
  const tee = useTestStack();

  it('counts executions and moves last use forward, through the durable consumer', async () => {
    const { environment } = await tee.client.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.BUN,
    });
    const id = environment!.id;
    for (let i = 0; i < 2; i++) {
      await tee.client.executions.execute({
        environmentId: id,
        data: fromJson(ValueSchema, { a: i, b: 1 }),
      });
    }
    // The count follows the events, a moment after the executions.
    await vi.waitFor(
      async () => {
        const current = (await tee.client.environments.getEnvironment({ id })).environment!;
        expect(current.executionCount).toBe(2n);
        expect(timestampMs(current.lastUsedTime!)).toBeGreaterThan(
          timestampMs(environment!.createTime!),
        );
      },
      { timeout: 10_000, interval: 100 },
    );
    await tee.client.environments.deleteEnvironment({ id });
  });
});

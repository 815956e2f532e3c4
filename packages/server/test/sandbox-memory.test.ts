import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { instanceLimit, SandboxMemory } from '../src/index.js';

const refusal = async (attempt: () => unknown) => {
  try {
    await attempt();
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error('expected a refusal');
};

describe('SandboxMemory', () => {
  it('admits running work up to the budget and refuses the rest at once, naming the setting', async () => {
    const memory = new SandboxMemory(1024);
    const first = await memory.admit(768, 'an execution');
    const error = await refusal(() => memory.admit(512, 'an execution with limits.memory_mb 512'));
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toContain('TEE_SANDBOX_MEMORY_MB');
    expect(error.rawMessage).toContain('limits.memory_mb 512');
    expect(error.rawMessage).toContain('try again');
    first.release();
    first.release(); // idempotent: releasing twice frees once
    const again = await memory.admit(1024, 'an execution');
    await expect(memory.admit(1, 'an execution')).rejects.toThrow(/TEE_SANDBOX_MEMORY_MB/);
    again.release();
  });

  it('gives warm sandboxes only free memory, and has them yield to running work', async () => {
    const memory = new SandboxMemory(1024);
    const warm = [memory.reserveWarm(512)!, memory.reserveWarm(512)!];
    expect(memory.reserveWarm(1)).toBeUndefined();
    const asked: number[] = [];
    memory.onPressure((overMb) => {
      asked.push(overMb);
      warm.pop()!.release();
      return Promise.resolve();
    });
    // Warm memory does not turn running work away: the pool is asked to give back what it needs.
    const running = await memory.admit(256, 'an execution');
    expect(asked).toEqual([256]);
    expect(memory.overMb).toBe(0);
    // A taken warm sandbox counts as running from then on.
    warm[0]!.promote();
    await expect(memory.admit(512, 'an execution')).rejects.toThrow(/hold 768 of its 1024 MiB/);
    running.release();
    warm[0]!.release();
    expect(memory.reserveWarm(1024)).toBeDefined();
  });
});

describe('instanceLimit', () => {
  it('counts work of every caller together and names its setting', async () => {
    const limit = instanceLimit(2, 'executions', 'TEE_MAX_RUNNING_EXECUTIONS');
    const releases = [limit.acquire(), limit.acquire()];
    const error = await refusal(() => limit.acquire());
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toBe(
      'this instance already has 2 executions running (TEE_MAX_RUNNING_EXECUTIONS); try again when one has finished',
    );
    releases[0]!();
    releases[0]!();
    releases.push(limit.acquire());
    expect(() => limit.acquire()).toThrow(/TEE_MAX_RUNNING_EXECUTIONS/);
  });
});

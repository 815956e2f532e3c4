import { setTimeout as delay } from 'node:timers/promises';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { abortReason, InFlight } from '../src/index.js';

/** Work that ends by itself after `ms`, or at once with its abort reason. */
const sleeper = (ms: number) => (signal: AbortSignal) =>
  new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => resolve('finished'), ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    });
  });

describe('InFlight', () => {
  it('lets work finish within the grace period and refuses new work meanwhile', async () => {
    const work = new InFlight('test');
    const short = work.run(sleeper(100));
    const draining = work.drain(5_000, abortReason('Stopping', 'stopping'));
    await expect(work.run(sleeper(1))).rejects.toSatisfy(
      (error) => error instanceof ConnectError && error.code === Code.Unavailable,
    );
    await draining;
    expect(await short).toBe('finished');
    expect(work.size).toBe(0);
  });

  it('aborts what outlives the grace period with the reason, and waits for it to end', async () => {
    const work = new InFlight('test');
    let cleanedUp = false;
    const long = work.run(async (signal) => {
      try {
        return await sleeper(60_000)(signal);
      } finally {
        await delay(50); // winding up: removing a sandbox, recording the outcome
        cleanedUp = true;
      }
    });
    const started = Date.now();
    await work.drain(100, abortReason('Stopping', 'the service stopped'));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(cleanedUp).toBe(true);
    await expect(long).rejects.toMatchObject({ name: 'Stopping', message: 'the service stopped' });
  });

  it('aborts only the work under a key', async () => {
    const work = new InFlight('test');
    const mine = work.run(sleeper(60_000), 'env-1');
    const other = work.run(sleeper(100), 'env-2');
    expect(work.abort('env-1', abortReason('EnvironmentDeleted', 'deleted'))).toBe(1);
    await expect(mine).rejects.toMatchObject({ name: 'EnvironmentDeleted' });
    expect(await other).toBe('finished');
    expect(work.abort('env-1', abortReason('EnvironmentDeleted', 'deleted'))).toBe(0);
  });
});

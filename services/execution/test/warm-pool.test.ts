import { create } from '@bufbuild/protobuf';
import { createLogger } from '@assist-tee/logger';
import { EnvironmentSchema } from '@assist-tee/proto';
import { type MemoryReservation, SandboxMemory } from '@assist-tee/server';
import { describe, expect, it } from 'vitest';
import type { RunnerSandbox } from '../src/runner-sandbox.js';
import { WarmPool, type WarmPoolSettings } from '../src/warm-pool.js';

/**
 * What the pool sees of a sandbox, driven by the test. Like a launched sandbox, its removal
 * gives its memory back.
 */
class StubSandbox {
  readonly id = `stub-${Math.random().toString(16).slice(2)}`;
  readonly ready: Promise<boolean>;
  readonly ended: Promise<void>;
  sayReady!: (ready: boolean) => void;
  end!: () => void;
  isReady = false;
  gone = false;
  removed = false;

  constructor(
    private readonly memory: MemoryReservation,
    readonly environmentId: string,
  ) {
    this.ready = new Promise((resolve) => (this.sayReady = resolve));
    this.ended = new Promise((resolve) => (this.end = resolve));
    void this.ready.then((ready) => (this.isReady = ready));
    void this.ended.then(() => (this.gone = true));
  }

  get unused(): boolean {
    return this.isReady && !this.gone;
  }

  remove(): Promise<void> {
    this.removed = true;
    this.memory.release();
    this.end();
    return Promise.resolve();
  }
}

const environmentOf = (n: number, tenantId = 'tenant-a') =>
  create(EnvironmentSchema, { id: `00000000-0000-4000-8000-00000000000${n}`, tenantId });
const environment = environmentOf(1);

function poolWith(memory: SandboxMemory, settings: Partial<WarmPoolSettings> = {}) {
  const launched: StubSandbox[] = [];
  const pool = new WarmPool({
    settings: {
      maxPerEnvironment: 2,
      memoryBudgetMb: 512,
      idleMs: 60_000,
      maxStarts: 2,
      ...settings,
    },
    sandboxMemoryMb: 256,
    memory,
    launch: (launchedFor, reservation) => {
      const sandbox = new StubSandbox(reservation, launchedFor.id);
      launched.push(sandbox);
      return Promise.resolve(sandbox as unknown as RunnerSandbox);
    },
    isDeleted: () => Promise.resolve(false),
    logger: createLogger({ level: 'silent' }),
  });
  /** Closes the pool once the starts it made since have ended (as they would, at the latest on their startup timeout). */
  const close = () => {
    for (const sandbox of launched) sandbox.sayReady(false);
    return pool.close();
  };
  return { pool, launched, close };
}

/** Waits (a little) for what the pool does on later turns of the event loop. */
const until = async (done: () => boolean) => {
  const deadline = Date.now() + 2_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`never happened: ${done.toString()}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
};

/** The environment's first warm sandbox, started and ready. */
async function oneReady(pool: WarmPool, launched: StubSandbox[]) {
  pool.prewarm(environment);
  await until(() => launched.length === 1);
  launched[0]!.sayReady(true);
  await until(() => pool.status()[0]?.ready === 1);
}

describe('WarmPool', () => {
  it('removes a sandbox it waited for that died after saying ready, and frees its memory', async () => {
    const memory = new SandboxMemory(1024);
    const { pool, launched, close } = poolWith(memory);
    pool.prewarm(environment);
    await until(() => launched.length === 1);
    const taking = pool.take(environment, { defaultLimits: true });
    // Ready, then gone before the take looks at it (killed, crashed).
    const [sandbox] = launched;
    sandbox!.sayReady(true);
    sandbox!.end();
    expect(await taking).toEqual({ coldStartReason: 'POOL_EMPTY' });
    await until(() => sandbox!.removed);
    await close();
    expect(memory.reserveWarm(1024)).toBeDefined();
  });

  it('gives idle sandboxes back when running work needs their memory', async () => {
    const memory = new SandboxMemory(768);
    const { pool, launched, close } = poolWith(memory);
    await oneReady(pool, launched);
    // 512 of 768 MiB are free; the warm sandbox gives its 256 back before this resolves.
    const running = await memory.admit(768, 'an execution');
    expect(launched[0]!.removed).toBe(true);
    expect(memory.overMb).toBe(0);
    expect(pool.status()[0]?.ready).toBe(0);
    running.release();
    await close();
  });

  it('counts a taken sandbox as running: the pool cannot give its memory away', async () => {
    const memory = new SandboxMemory(512);
    const { pool, launched, close } = poolWith(memory);
    await oneReady(pool, launched);
    const taken = pool.takeReady(environment.id);
    expect(taken).toBeDefined();
    await expect(memory.admit(512, 'an execution')).rejects.toThrow(/hold 256 of its 512 MiB/);
    pool.discard(taken!);
    await close();
    expect(memory.reserveWarm(512)).toBeDefined();
  });

  it('keeps idle sandboxes while there is room, and evicts the least recently used for a new environment', async () => {
    const memory = new SandboxMemory(4096);
    const { pool, launched, close } = poolWith(memory, { memoryBudgetMb: 768 });
    for (const n of [1, 2, 3]) await readyFor(pool, launched, environmentOf(n));
    expect(readyCounts(pool)).toEqual({ 1: 1, 2: 1, 3: 1 });

    await readyFor(pool, launched, environmentOf(4));
    // 1 was used longest ago: its sandbox made room, and was counted.
    expect(launched.find((sandbox) => sandbox.environmentId === environmentOf(1).id)!.removed).toBe(
      true,
    );
    expect(readyCounts(pool)).toEqual({ 1: 0, 2: 1, 3: 1, 4: 1 });
    expect(
      pool.status().find((entry) => entry.environmentId === environmentOf(1).id),
    ).toMatchObject({
      evictions: 1,
    });
    expect(pool.totals()).toEqual({ hits: 0, misses: 0, evictions: 1 });

    // Its next execution is cold, and says why.
    expect(await pool.take(environmentOf(1), { defaultLimits: true })).toEqual({
      coldStartReason: 'EVICTED',
    });
    expect(pool.totals()).toMatchObject({ misses: 1 });
    await close();
  });

  it('counts hits and misses, and says POOL_EMPTY when nothing was evicted', async () => {
    const memory = new SandboxMemory(4096);
    const { pool, launched, close } = poolWith(memory);
    await oneReady(pool, launched);
    const taken = await pool.take(environment, { defaultLimits: true });
    expect(taken.sandbox).toBeDefined();
    // Taken right after: the replacement has not started yet.
    expect(await pool.take(environment, { defaultLimits: true })).toEqual({
      coldStartReason: 'POOL_EMPTY',
    });
    expect(pool.status()[0]).toMatchObject({ hits: 1, misses: 1, evictions: 0 });
    pool.discard(taken.sandbox!);
    await close();
  });

  it('says NO_POOL when the pool is off', async () => {
    const { pool, close } = poolWith(new SandboxMemory(4096), { maxPerEnvironment: 0 });
    expect(await pool.take(environment, { defaultLimits: true })).toEqual({
      coldStartReason: 'NO_POOL',
    });
    await close();
  });

  it("holds a tenant to its fair share while another tenant's environment waits", async () => {
    const memory = new SandboxMemory(4096);
    const { pool, launched, close } = poolWith(memory);
    // The other tenant's environment was used longest ago: by recency alone it would go first.
    await readyFor(pool, launched, environmentOf(1, 'tenant-b'));
    await readyFor(pool, launched, environmentOf(2, 'tenant-a'));
    await new Promise((resolve) => setTimeout(resolve, 5));
    pool.prewarm(environmentOf(3, 'tenant-a'));
    // tenant-a's older sandbox makes room, and only once it is gone does the new one start.
    await until(() => launched.length === 3);
    expect(launched[1]!.removed).toBe(true);
    launched[2]!.sayReady(true);
    await until(() => readyCounts(pool)[3] === 1);
    // tenant-a holds one of the two slots (its share); tenant-b keeps its sandbox.
    expect(readyCounts(pool)).toEqual({ 1: 1, 2: 0, 3: 1 });
    await close();
  });
});

/** Ready sandboxes per environment, by the environment's number. */
function readyCounts(pool: WarmPool): Record<number, number> {
  return Object.fromEntries(
    pool.status().map((entry) => [Number(entry.environmentId.slice(-1)), entry.ready]),
  );
}

/** Creates the environment's pool (as environment.created does) and makes its sandbox ready. */
async function readyFor(
  pool: WarmPool,
  launched: StubSandbox[],
  forEnvironment: ReturnType<typeof environmentOf>,
) {
  // Distinct creation times: the order of use is what the pool goes by.
  await new Promise((resolve) => setTimeout(resolve, 5));
  pool.prewarm(forEnvironment);
  const mine = () => launched.find((sandbox) => sandbox.environmentId === forEnvironment.id);
  await until(() => mine() !== undefined);
  mine()!.sayReady(true);
  await until(() => readyCounts(pool)[Number(forEnvironment.id.slice(-1))] === 1);
}

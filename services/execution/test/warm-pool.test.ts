import { create } from '@bufbuild/protobuf';
import { createLogger } from '@assist-tee/logger';
import { EnvironmentSchema } from '@assist-tee/proto';
import { type MemoryReservation, SandboxMemory } from '@assist-tee/server';
import { describe, expect, it } from 'vitest';
import type { HandlerSandbox } from '../src/handler-sandbox.js';
import { WarmPool } from '../src/warm-pool.js';

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

  constructor(private readonly memory: MemoryReservation) {
    this.ready = new Promise((resolve) => (this.sayReady = resolve));
    this.ended = new Promise((resolve) => (this.end = resolve));
    void this.ready.then((ready) => (this.isReady = ready));
    void this.ended.then(() => (this.gone = true));
  }

  get idle(): boolean {
    return this.isReady && !this.gone;
  }

  remove(): Promise<void> {
    this.removed = true;
    this.memory.release();
    this.end();
    return Promise.resolve();
  }
}

const environment = create(EnvironmentSchema, { id: '00000000-0000-4000-8000-000000000001' });

function poolWith(memory: SandboxMemory) {
  const launched: StubSandbox[] = [];
  const pool = new WarmPool({
    settings: { maxPerEnvironment: 2, memoryBudgetMb: 512, idleMs: 60_000, maxStarts: 2 },
    sandboxMemoryMb: 256,
    memory,
    launch: (_, reservation) => {
      const sandbox = new StubSandbox(reservation);
      launched.push(sandbox);
      return Promise.resolve(sandbox as unknown as HandlerSandbox);
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
    const taking = pool.take(environment);
    // Ready, then gone before the take looks at it (killed, crashed).
    const [sandbox] = launched;
    sandbox!.sayReady(true);
    sandbox!.end();
    expect(await taking).toBeUndefined();
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
});

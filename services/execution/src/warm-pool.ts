import type { Logger } from '@assist-tee/logger';
import type { Environment } from '@assist-tee/proto';
import type { MemoryReservation, SandboxMemory } from '@assist-tee/server';
import type { HandlerSandbox } from './handler-sandbox.js';

export interface WarmPoolSettings {
  /** Most warm sandboxes (ready or starting) one environment keeps; 0 turns the pool off. */
  maxPerEnvironment: number;
  /** Memory limits of all warm sandboxes together may not exceed this. */
  memoryBudgetMb: number;
  /** An environment not executed for this long keeps no warm sandbox. */
  idleMs: number;
  /** Warm sandboxes started at the same time, over all environments (starts are CPU-bound). */
  maxStarts: number;
}

export interface WarmPoolOptions {
  settings: WarmPoolSettings;
  /** The memory limit of one warm sandbox (the default execution limit). */
  sandboxMemoryMb: number;
  /**
   * The instance's sandbox memory: a warm sandbox gets only what is free, and gives it back
   * when running work needs it.
   */
  memory: SandboxMemory;
  /**
   * Starts a sandbox for the environment with the default limits, labelled as warm; `memory`
   * is released once it is removed (or could not be started).
   */
  launch(environment: Environment, memory: MemoryReservation): Promise<HandlerSandbox>;
  /** Whether the environment was deleted (its sandboxes go before environment.deleted comes). */
  isDeleted(environmentId: string): Promise<boolean>;
  logger: Logger;
}

export interface EnvironmentPoolStatus {
  environmentId: string;
  ready: number;
  starting: number;
}

/** Demand is the number of takes in this window, per second. */
const DEMAND_WINDOW_MS = 10_000;
/** Until a start has been measured, a start is taken to last this long. */
const FIRST_START_ESTIMATE_MS = 600;
const MAX_RETRY_DELAY_MS = 60_000;
/** How long after a take that empties the pool the refill starts, if no discard started it. */
const REFILL_DELAY_MS = 200;

interface EnvironmentPool {
  environment: Environment;
  ready: HandlerSandbox[];
  /**
   * Starts for the pool, each resolving with its sandbox once ready (undefined if it failed).
   * An execution that takes one while it starts removes it from here: it is theirs.
   */
  starting: Set<Promise<HandlerSandbox | undefined>>;
  takes: number[];
  lastUseAt: number;
  failures: number;
  retryAt: number;
}

/**
 * Sandboxes started ahead of demand, per environment, with the main module already imported.
 * Each is handed out once, only after it said ready, and removed after its run by the
 * caller; the pool refills in the background. A pool's size follows the recent execution rate
 * times the time a start takes (the sandboxes needed to cover the gap), within the per-
 * environment maximum and the global memory budget; an idle environment's pool shrinks to zero.
 */
export class WarmPool {
  private readonly pools = new Map<string, EnvironmentPool>();
  private readonly removals = new Set<Promise<void>>();
  private readonly starts = new Set<Promise<unknown>>();
  /** Each warm sandbox's memory, promoted to running when an execution takes it. */
  private readonly memoryOf = new WeakMap<HandlerSandbox, MemoryReservation>();
  private startEstimateMs = FIRST_START_ESTIMATE_MS;
  private closed = false;
  private readonly idleTimer: NodeJS.Timeout;

  constructor(private readonly options: WarmPoolOptions) {
    this.idleTimer = setInterval(() => this.shrinkIdle(), Math.min(options.settings.idleMs, 5_000));
    this.idleTimer.unref();
    options.memory.onPressure((overMb) => this.yieldMemory(overMb));
  }

  private get enabled(): boolean {
    return this.options.settings.maxPerEnvironment > 0 && !this.closed;
  }

  /** Starts one warm sandbox for a new environment (creation counts as use). */
  prewarm(environment: Environment): void {
    if (!this.enabled) return;
    this.refill(this.poolOf(environment));
  }

  /** The environment as the pool last saw it, if it keeps a pool for it. */
  environment(environmentId: string): Environment | undefined {
    return this.enabled ? this.pools.get(environmentId)?.environment : undefined;
  }

  /** A ready sandbox of the environment that nothing has used, or undefined when none is. */
  takeReady(environmentId: string): HandlerSandbox | undefined {
    const pool = this.enabled ? this.pools.get(environmentId) : undefined;
    if (pool === undefined) return undefined;
    const taken = this.takeIdle(pool);
    if (taken !== undefined) this.noteTake(pool);
    return this.handOut(taken);
  }

  /**
   * A ready sandbox of the environment that nothing has used, or undefined when there is none
   * (the caller starts a cold one). A sandbox still starting is taken and waited for: it is
   * ready sooner than a new one would be.
   */
  async take(environment: Environment): Promise<HandlerSandbox | undefined> {
    if (!this.enabled) return undefined;
    const pool = this.poolOf(environment);
    const taken = this.takeIdle(pool);
    this.noteTake(pool);
    if (taken !== undefined) return this.handOut(taken);
    const [start] = pool.starting;
    if (start === undefined) return undefined;
    pool.starting.delete(start);
    const sandbox = await start;
    if (sandbox === undefined) return undefined;
    // It said ready, and may have died since: it is ours to remove then.
    if (!sandbox.idle) {
      this.discard(sandbox);
      return undefined;
    }
    return this.handOut(sandbox);
  }

  /**
   * Removes a used (or unwanted) sandbox in the background, and refills what was taken;
   * close() waits for the removal. Both begin on the next turn of the event loop: a run's
   * sandbox is discarded just before its answer is written, and that goes first.
   */
  discard(sandbox: HandlerSandbox): void {
    const removal = new Promise((resolve) => setImmediate(resolve)).then(() => {
      this.refillAll();
      return sandbox.remove();
    });
    this.track(removal);
  }

  /** Removes the environment's warm sandboxes at once (it was deleted or expired). */
  drain(environmentId: string): number {
    const pool = this.pools.get(environmentId);
    if (pool === undefined) return 0;
    this.pools.delete(environmentId);
    // Sandboxes still starting are removed when they are ready (see startOne).
    for (const sandbox of pool.ready) this.discard(sandbox);
    return pool.ready.length;
  }

  status(): EnvironmentPoolStatus[] {
    return [...this.pools.values()].map((pool) => ({
      environmentId: pool.environment.id,
      ready: pool.ready.length,
      starting: pool.starting.size,
    }));
  }

  /** Removes every warm sandbox and waits for what is starting and being removed. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.idleTimer);
    for (const id of [...this.pools.keys()]) this.drain(id);
    await Promise.allSettled([...this.starts]);
    await Promise.allSettled([...this.removals]);
  }

  /**
   * Gives running work back the memory that idle warm sandboxes hold, at least `overMb` (the
   * least recently used environments' first), and resolves once they are removed.
   */
  private async yieldMemory(overMb: number): Promise<void> {
    const removals: Promise<void>[] = [];
    let freedMb = 0;
    const byAge = [...this.pools.values()].sort((a, b) => a.lastUseAt - b.lastUseAt);
    for (const pool of byAge) {
      while (freedMb < overMb && pool.ready.length > 0) {
        const sandbox = pool.ready.shift()!;
        freedMb += this.options.sandboxMemoryMb;
        removals.push(this.remove(sandbox));
      }
    }
    await Promise.all(removals);
  }

  /** The sandbox leaves the pool for an execution, its memory now counted as running. */
  private handOut(sandbox: HandlerSandbox | undefined): HandlerSandbox | undefined {
    if (sandbox !== undefined) this.memoryOf.get(sandbox)?.promote();
    return sandbox;
  }

  private takeIdle(pool: EnvironmentPool): HandlerSandbox | undefined {
    while (pool.ready.length > 0) {
      const sandbox = pool.ready.shift()!;
      if (sandbox.idle) return sandbox;
      this.discard(sandbox);
    }
    return undefined;
  }

  /**
   * Counts the take just made towards the pool's demand. Replacements start when the run is
   * over and its sandbox discarded, so they do not compete with it for the CPU; a pool that ran
   * dry starts them a little later anyway, for the runs that last.
   */
  private noteTake(pool: EnvironmentPool): void {
    const now = Date.now();
    pool.lastUseAt = now;
    pool.takes.push(now);
    while (pool.takes[0]! < now - DEMAND_WINDOW_MS) pool.takes.shift();
    if (pool.ready.length === 0) setTimeout(() => this.refill(pool), REFILL_DELAY_MS).unref();
  }

  private poolOf(environment: Environment): EnvironmentPool {
    let pool = this.pools.get(environment.id);
    if (pool === undefined) {
      pool = {
        environment,
        ready: [],
        starting: new Set(),
        takes: [],
        lastUseAt: Date.now(),
        failures: 0,
        retryAt: 0,
      };
      this.pools.set(environment.id, pool);
    }
    pool.environment = environment;
    return pool;
  }

  /** How many unused sandboxes the environment should have now. */
  private target(pool: EnvironmentPool, now: number): number {
    if (now - pool.lastUseAt > this.options.settings.idleMs) return 0;
    const perSecond = pool.takes.length / (DEMAND_WINDOW_MS / 1000);
    const covering = Math.ceil((perSecond * this.startEstimateMs) / 1000);
    return Math.min(this.options.settings.maxPerEnvironment, 1 + covering);
  }

  private refill(pool: EnvironmentPool): void {
    const now = Date.now();
    if (!this.enabled || this.pools.get(pool.environment.id) !== pool || now < pool.retryAt) return;
    while (
      pool.ready.length + pool.starting.size < this.target(pool, now) &&
      this.starts.size < this.options.settings.maxStarts &&
      this.reservedMb() + this.options.sandboxMemoryMb <= this.options.settings.memoryBudgetMb
    ) {
      const memory = this.options.memory.reserveWarm(this.options.sandboxMemoryMb);
      if (memory === undefined) return;
      this.startOne(pool, memory);
    }
  }

  private refillAll(): void {
    for (const pool of this.pools.values()) this.refill(pool);
  }

  /** Memory limits of the sandboxes the pool holds or is starting for itself. */
  reservedMb(): number {
    let count = 0;
    for (const pool of this.pools.values()) count += pool.ready.length + pool.starting.size;
    return count * this.options.sandboxMemoryMb;
  }

  private startOne(pool: EnvironmentPool, memory: MemoryReservation): void {
    const started = Date.now();
    const start = Promise.resolve()
      .then(() => this.options.launch(pool.environment, memory))
      .then(
        async (sandbox) => {
          this.memoryOf.set(sandbox, memory);
          return (await sandbox.ready) ? sandbox : this.failed(pool, sandbox);
        },
        (error: unknown) => {
          memory.release(); // in case the launch failed before it took the reservation over
          return this.failed(pool, undefined, error);
        },
      );
    pool.starting.add(start);
    const done = start.then((sandbox) => {
      const claimed = !pool.starting.delete(start);
      if (sandbox === undefined) return;
      pool.failures = 0;
      this.startEstimateMs = 0.8 * this.startEstimateMs + 0.2 * (Date.now() - started);
      // Claimed by take(), which hands it out or removes it.
      if (claimed) return;
      // Running work was admitted into warm memory meanwhile: it goes to that work.
      const squeezed = this.options.memory.overMb > 0;
      if (this.closed || this.pools.get(pool.environment.id) !== pool || squeezed) {
        this.discard(sandbox);
        return;
      }
      pool.ready.push(sandbox);
      // A ready sandbox that dies while idle (killed, crashed) is dropped and replaced.
      void sandbox.ended.then(() => {
        const at = pool.ready.indexOf(sandbox);
        if (at === -1) return;
        pool.ready.splice(at, 1);
        void this.remove(sandbox); // tracked: close() waits for it
        this.unlessDeleted(pool, () => {
          this.options.logger.warn(
            { environmentId: pool.environment.id, containerId: sandbox.id.slice(0, 12) },
            'a warm sandbox died while idle; replacing it',
          );
          this.refill(pool);
        });
      });
    });
    this.starts.add(done);
    void done.finally(() => {
      this.starts.delete(done);
      this.refillAll();
    });
  }

  /** A start that failed: its environment waits before the next try, longer each time. */
  private failed(
    pool: EnvironmentPool,
    sandbox: HandlerSandbox | undefined,
    error?: unknown,
  ): undefined {
    if (sandbox !== undefined) this.discard(sandbox);
    pool.failures += 1;
    pool.retryAt = Date.now() + Math.min(1000 * 2 ** pool.failures, MAX_RETRY_DELAY_MS);
    this.unlessDeleted(pool, () =>
      this.options.logger.warn(
        { environmentId: pool.environment.id, err: error, failures: pool.failures },
        'a warm sandbox did not become ready',
      ),
    );
    return undefined;
  }

  /**
   * A lost sandbox most often means its environment was just deleted: DeleteEnvironment
   * removes the sandboxes before environment.deleted arrives. Then the pool is dropped at once
   * instead of being refilled; otherwise `then` runs.
   */
  private unlessDeleted(pool: EnvironmentPool, then: () => void): void {
    const { id } = pool.environment;
    void this.options.isDeleted(id).then((deleted) => {
      if (!deleted) return then();
      this.drain(id);
      this.options.logger.debug({ environmentId: id }, 'environment deleted: warm pool emptied');
    });
  }

  private remove(sandbox: HandlerSandbox): Promise<void> {
    const removal = sandbox.remove();
    this.track(removal);
    return removal;
  }

  private track(removal: Promise<void>): void {
    this.removals.add(removal);
    void removal.finally(() => this.removals.delete(removal));
  }

  private shrinkIdle(): void {
    const now = Date.now();
    for (const [id, pool] of this.pools) {
      if (now - pool.lastUseAt <= this.options.settings.idleMs) continue;
      this.drain(id);
      this.options.logger.debug({ environmentId: id }, 'idle environment: warm pool emptied');
    }
  }
}

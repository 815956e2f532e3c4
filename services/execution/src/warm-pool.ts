import type { ColdStartReasonName } from '@assist-tee/db';
import type { Logger } from '@assist-tee/logger';
import type { Environment } from '@assist-tee/proto';
import type { MemoryReservation, SandboxMemory } from '@assist-tee/server';
import type { RunnerSandbox } from './runner-sandbox.js';
import { type EnvironmentDemand, evictionOrder, planPool, warmTarget } from './pool-plan.js';

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
  launch(environment: Environment, memory: MemoryReservation): Promise<RunnerSandbox>;
  /** Whether the environment was deleted (its sandboxes go before environment.deleted comes). */
  isDeleted(environmentId: string): Promise<boolean>;
  logger: Logger;
}

/** Executions with the default limits that took a warm sandbox, or had to start one. */
export interface PoolCounters {
  hits: number;
  misses: number;
  /** Unused sandboxes removed to make room (not idle expiry, not deletion). */
  evictions: number;
}

export interface EnvironmentPoolStatus extends PoolCounters {
  environmentId: string;
  tenantId: string;
  ready: number;
  starting: number;
  reservedMb: number;
  lastUseAt: number;
}

/** A warm sandbox for the caller, or why there is none (it starts a cold one). */
export type Take =
  | { sandbox: RunnerSandbox; coldStartReason?: undefined }
  | { sandbox?: undefined; coldStartReason: ColdStartReasonName };

/**
 * Demand is the number of takes in this window, per second; an environment taken from (or
 * created) within it is in use, and comes before idle ones.
 */
const DEMAND_WINDOW_MS = 10_000;
/** Until a start has been measured, a start is taken to last this long. */
const FIRST_START_ESTIMATE_MS = 600;
const MAX_RETRY_DELAY_MS = 60_000;
/** How long after a take that empties the pool the refill starts, if no discard started it. */
const REFILL_DELAY_MS = 200;

interface EnvironmentPool {
  environment: Environment;
  ready: RunnerSandbox[];
  /**
   * Starts for the pool, each resolving with its sandbox once ready (undefined if it failed).
   * An execution that takes one while it starts removes it from here: it is theirs.
   */
  starting: Set<Promise<RunnerSandbox | undefined>>;
  takes: number[];
  lastUseAt: number;
  failures: number;
  retryAt: number;
  counters: PoolCounters;
  /** A sandbox of it was evicted, and none has been ready for it since. */
  evicted: boolean;
}

/**
 * Sandboxes started ahead of demand, per environment, with the main module already imported.
 * Each is handed out once, only after it said ready, and removed after its run by the caller;
 * the pool refills in the background. All environments share one budget
 * (TEE_POOL_MEMORY_MB), divided by demand (pool-plan.ts): an environment's size follows its
 * recent execution rate; environments in use come before idle ones, each one's first sandbox
 * before any one's second, then the most recently used; each tenant gets its fair share
 * before another tenant's environments get more. When the budget is full, the ready sandboxes
 * of the environments that come last are removed (evicted) to make room; sandboxes still
 * starting never are. An environment not executed for TEE_POOL_IDLE_MS keeps none.
 */
export class WarmPool {
  private readonly pools = new Map<string, EnvironmentPool>();
  private readonly removals = new Set<Promise<void>>();
  private readonly starts = new Set<Promise<unknown>>();
  /** Each warm sandbox's memory, promoted to running when an execution takes it. */
  private readonly memoryOf = new WeakMap<RunnerSandbox, MemoryReservation>();
  private readonly counters: PoolCounters = { hits: 0, misses: 0, evictions: 0 };
  /** Evicted sandboxes still being removed: they hold their memory until they are gone. */
  private leaving = 0;
  private startEstimateMs = FIRST_START_ESTIMATE_MS;
  private closed = false;
  private planQueued = false;
  private readonly idleTimer: NodeJS.Timeout;

  constructor(private readonly options: WarmPoolOptions) {
    this.idleTimer = setInterval(() => this.tick(), Math.min(options.settings.idleMs, 5_000));
    this.idleTimer.unref();
    options.memory.onPressure((overMb) => this.yieldMemory(overMb));
  }

  private get enabled(): boolean {
    return this.options.settings.maxPerEnvironment > 0 && !this.closed;
  }

  /** Starts a warm sandbox for a new environment (creation counts as use). */
  prewarm(environment: Environment): void {
    if (!this.enabled) return;
    this.poolOf(environment).lastUseAt = Date.now();
    this.schedule();
  }

  /** The environment as the pool last saw it, if it keeps a pool for it. */
  environment(environmentId: string): Environment | undefined {
    return this.enabled ? this.pools.get(environmentId)?.environment : undefined;
  }

  /** A ready sandbox of the environment that nothing has used, or undefined when none is. */
  takeReady(environmentId: string): RunnerSandbox | undefined {
    const pool = this.enabled ? this.pools.get(environmentId) : undefined;
    const sandbox = pool === undefined ? undefined : this.takeIdle(pool);
    if (sandbox === undefined) return undefined;
    this.noteTake(pool!, true);
    return this.handOut(sandbox);
  }

  /**
   * A ready sandbox of the environment that nothing has used, or why there is none (the
   * caller starts a cold one). A sandbox still starting is taken and waited for: it is ready
   * sooner than a new one would be. Warm sandboxes have the default limits: a call with
   * others (`defaultLimits` false) gets none, and is not counted as a miss.
   */
  async take(
    environment: Environment,
    { defaultLimits }: { defaultLimits: boolean },
  ): Promise<Take> {
    if (!this.enabled) return { coldStartReason: 'NO_POOL' };
    if (!defaultLimits) return { coldStartReason: 'LIMITS' };
    const pool = this.poolOf(environment);
    const ready = this.takeIdle(pool);
    const [start] = pool.starting;
    const coldStartReason = pool.evicted ? 'EVICTED' : 'POOL_EMPTY';
    if (ready === undefined && start !== undefined) pool.starting.delete(start);
    let sandbox = ready ?? (await start);
    // It said ready, and may have died since: it is ours to remove then.
    if (sandbox !== undefined && !sandbox.unused) {
      this.discard(sandbox);
      sandbox = undefined;
    }
    this.noteTake(pool, sandbox !== undefined);
    return sandbox === undefined ? { coldStartReason } : { sandbox: this.handOut(sandbox) };
  }

  /**
   * Removes a used (or unwanted) sandbox in the background, and refills what was taken;
   * close() waits for the removal. Both begin on the next turn of the event loop: a run's
   * sandbox is discarded just before its answer is written, and that goes first.
   */
  discard(sandbox: RunnerSandbox): void {
    const removal = new Promise((resolve) => setImmediate(resolve)).then(() => {
      this.schedule();
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

  /** The environments the pool tracks, most recently used first. */
  status(): EnvironmentPoolStatus[] {
    return [...this.pools.values()]
      .sort((a, b) => b.lastUseAt - a.lastUseAt)
      .map((pool) => ({
        environmentId: pool.environment.id,
        tenantId: pool.environment.tenantId,
        ready: pool.ready.length,
        starting: pool.starting.size,
        reservedMb: this.held(pool) * this.options.sandboxMemoryMb,
        lastUseAt: pool.lastUseAt,
        ...pool.counters,
      }));
  }

  /** Hits, misses and evictions over every environment since the pool began. */
  totals(): PoolCounters {
    return { ...this.counters };
  }

  /**
   * Memory limits of the sandboxes the pool holds, is starting for itself, or has evicted and
   * is still removing.
   */
  reservedMb(): number {
    let count = this.leaving;
    for (const pool of this.pools.values()) count += this.held(pool);
    return count * this.options.sandboxMemoryMb;
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
   * Gives running work back the memory that ready warm sandboxes hold, at least `overMb` (the
   * sandboxes that come last first), and resolves once they are removed.
   */
  private async yieldMemory(overMb: number): Promise<void> {
    const count = Math.ceil(overMb / this.options.sandboxMemoryMb);
    const { held, ready } = this.slotCounts();
    const victims = evictionOrder(this.demands(Date.now()), held, ready, new Map(), count);
    await Promise.all(victims.map((id) => this.evict(this.pools.get(id)!)));
  }

  /** Plans once on a later turn of the event loop, however many changes asked for it. */
  private schedule(): void {
    if (this.planQueued) return;
    this.planQueued = true;
    setImmediate(() => {
      this.planQueued = false;
      this.plan();
    });
  }

  /** Starts what the budget gives environments and they lack, evicting to make room. */
  private plan(): void {
    if (!this.enabled) return;
    const { memoryBudgetMb, maxStarts } = this.options.settings;
    const size = this.options.sandboxMemoryMb;
    const { held, ready } = this.slotCounts();
    const { start, evict } = planPool(
      this.demands(Date.now()),
      held,
      ready,
      Math.floor(memoryBudgetMb / size),
      this.leaving,
    );
    for (const id of evict) void this.evict(this.pools.get(id)!);
    for (const id of start) {
      if (this.starts.size >= maxStarts || this.reservedMb() + size > memoryBudgetMb) return;
      const memory = this.options.memory.reserveWarm(size);
      if (memory === undefined) return;
      this.startOne(this.pools.get(id)!, memory);
    }
  }

  /** What each environment asks of the budget now. */
  private demands(now: number): EnvironmentDemand[] {
    const { maxPerEnvironment, idleMs } = this.options.settings;
    return [...this.pools.values()].map((pool) => {
      const idleFor = now - pool.lastUseAt;
      const active = idleFor <= DEMAND_WINDOW_MS;
      // n calls in the window are n - 1 intervals: one call alone says nothing of a rate.
      const recent = pool.takes.filter((at) => at >= now - DEMAND_WINDOW_MS).length;
      const callsPerSecond = Math.max(0, recent - 1) / (DEMAND_WINDOW_MS / 1000);
      const held = this.held(pool);
      let wanted =
        idleFor > idleMs ? 0 : warmTarget(callsPerSecond, this.startEstimateMs, maxPerEnvironment);
      // While in use it keeps what it holds: a rate that dips between calls frees nothing.
      if (active) wanted = Math.max(wanted, Math.min(held, maxPerEnvironment));
      // Starts that keep failing wait (retryAt): until then it keeps what it has, no more.
      if (now < pool.retryAt) wanted = Math.min(wanted, held);
      return {
        environmentId: pool.environment.id,
        tenantId: pool.environment.tenantId,
        wanted,
        active,
        callsPerSecond,
        lastUseAt: pool.lastUseAt,
      };
    });
  }

  private slotCounts(): { held: Map<string, number>; ready: Map<string, number> } {
    const held = new Map<string, number>();
    const ready = new Map<string, number>();
    for (const [id, pool] of this.pools) {
      held.set(id, this.held(pool));
      ready.set(id, pool.ready.length);
    }
    return { held, ready };
  }

  private held(pool: EnvironmentPool): number {
    return pool.ready.length + pool.starting.size;
  }

  /** Removes one of the environment's ready sandboxes to make room, and counts it. */
  private evict(pool: EnvironmentPool): Promise<void> {
    const sandbox = pool.ready.pop();
    if (sandbox === undefined) return Promise.resolve();
    pool.evicted = true;
    pool.counters.evictions += 1;
    this.counters.evictions += 1;
    this.options.logger.debug(
      { environmentId: pool.environment.id, containerId: sandbox.id.slice(0, 12) },
      'warm sandbox evicted',
    );
    this.leaving += 1;
    return this.remove(sandbox).finally(() => (this.leaving -= 1));
  }

  /** The sandbox leaves the pool for an execution, its memory now counted as running. */
  private handOut(sandbox: RunnerSandbox): RunnerSandbox {
    this.memoryOf.get(sandbox)?.promote();
    return sandbox;
  }

  private takeIdle(pool: EnvironmentPool): RunnerSandbox | undefined {
    while (pool.ready.length > 0) {
      const sandbox = pool.ready.shift()!;
      if (sandbox.unused) return sandbox;
      this.discard(sandbox);
    }
    return undefined;
  }

  /**
   * Counts the take just made towards the pool's demand, as a hit or a miss. Replacements
   * start when the run is over and its sandbox discarded, so they do not compete with it for
   * the CPU; a pool that ran dry starts them a little later anyway, for the runs that last.
   */
  private noteTake(pool: EnvironmentPool, hit: boolean): void {
    const now = Date.now();
    pool.lastUseAt = now;
    pool.takes.push(now);
    while (pool.takes[0]! < now - DEMAND_WINDOW_MS) pool.takes.shift();
    const counter = hit ? 'hits' : 'misses';
    pool.counters[counter] += 1;
    this.counters[counter] += 1;
    if (pool.ready.length === 0) setTimeout(() => this.schedule(), REFILL_DELAY_MS).unref();
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
        counters: { hits: 0, misses: 0, evictions: 0 },
        evicted: false,
      };
      this.pools.set(environment.id, pool);
    }
    pool.environment = environment;
    return pool;
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
      pool.evicted = false;
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
          this.schedule();
        });
      });
    });
    this.starts.add(done);
    void done.finally(() => {
      this.starts.delete(done);
      this.schedule();
    });
  }

  /** A start that failed: its environment waits before the next try, longer each time. */
  private failed(
    pool: EnvironmentPool,
    sandbox: RunnerSandbox | undefined,
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

  /** Removes a sandbox; once it is gone (its memory given back) the pool plans again. */
  private remove(sandbox: RunnerSandbox): Promise<void> {
    const removal = sandbox.remove();
    this.track(removal);
    return removal;
  }

  private track(removal: Promise<void>): void {
    this.removals.add(removal);
    void removal.finally(() => {
      this.removals.delete(removal);
      this.schedule();
    });
  }

  /** Drops the environments idle past TEE_POOL_IDLE_MS, and plans with the time passed. */
  private tick(): void {
    const now = Date.now();
    for (const [id, pool] of this.pools) {
      if (now - pool.lastUseAt <= this.options.settings.idleMs) continue;
      this.drain(id);
      this.options.logger.debug({ environmentId: id }, 'idle environment: warm pool emptied');
    }
    this.schedule();
  }
}

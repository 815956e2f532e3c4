import {
  type AssistTeeClient,
  ColdStartReason,
  type Execution,
  ExecutionStatus,
  Runtime,
} from '@assist-tee/client';
import type { admin } from '@assist-tee/proto';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { expectNothingLabelled } from '@assist-tee/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { handlerModules, useTestStack } from '../src/index.js';

const SANDBOX_MB = 256; // the default limits.memory_mb, which warm sandboxes are started with
const SLOTS = 4;
const BUDGET_MB = SLOTS * SANDBOX_MB;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// One budget of four warm sandboxes shared by every environment and tenant of the instance,
// with real runsc sandboxes: who gets a slot, who gives one up, and why a call ran cold.
describe('the warm pool’s budget across environments and tenants', () => {
  const tee = useTestStack({
    TEE_POOL_MEMORY_MB: String(BUDGET_MB),
    TEE_POOL_MAX_PER_ENVIRONMENT: '2',
    // The slow environments below take 20 s to import their main module.
    TEE_STARTUP_TIMEOUT_MS: '40000',
  });
  /** Every environment made here, by name (for readable failures), with its owner's client. */
  const made = new Map<string, { name: string; client: AssistTeeClient }>();
  const nameOf = (id: string) => made.get(id)?.name ?? id.slice(0, 8);

  const poolStatus = () => tee.operator.admin.pool.getPoolStatus({});
  const entry = (status: admin.GetPoolStatusResponse, id: string) =>
    status.environments.find((pool) => pool.environmentId === id);
  const held = (status: admin.GetPoolStatusResponse, id: string) => {
    const pool = entry(status, id);
    return (pool?.ready ?? 0) + (pool?.starting ?? 0);
  };
  const heldByTenant = (status: admin.GetPoolStatusResponse, tenantId: string) =>
    status.environments
      .filter((pool) => pool.tenantId === tenantId)
      .reduce((sum, pool) => sum + pool.ready + pool.starting, 0);
  const describeStatus = (status: admin.GetPoolStatusResponse) =>
    JSON.stringify({
      ready: status.ready,
      starting: status.starting,
      reservedMb: status.reservedMemoryMb,
      evictions: Number(status.evictions),
      environments: status.environments.map((pool) => ({
        name: nameOf(pool.environmentId),
        tenant: pool.tenantId,
        ready: pool.ready,
        starting: pool.starting,
        hits: Number(pool.hits),
        misses: Number(pool.misses),
        evictions: Number(pool.evictions),
      })),
    });

  /** Polls the pool until `done` holds; fails with the last status after `timeoutMs`. */
  async function poolUntil(
    what: string,
    done: (status: admin.GetPoolStatusResponse) => boolean,
    timeoutMs = 60_000,
  ): Promise<admin.GetPoolStatusResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await poolStatus();
      if (done(status)) return status;
      if (Date.now() > deadline) {
        throw new Error(`pool never got to: ${what}; last status ${describeStatus(status)}`);
      }
      await sleep(100);
    }
  }

  const warmContainers = () =>
    tee.stack.process.infrastructure.sandbox.listContainers({
      instanceId: tee.stack.config.instanceId,
      pool: 'warm',
    });

  /**
   * Waits for the pool to be at rest (nothing starting, used and evicted sandboxes removed:
   * that happens in the background) and checks that the engine then runs just the pool's
   * ready sandboxes, within the budget. Only while no execution runs: a taken sandbox keeps
   * its warm label.
   */
  async function containersMatchPool(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const [status, containers] = await Promise.all([poolStatus(), warmContainers()]);
      if (status.starting === 0 && containers.length === status.ready) {
        expect(containers.length, describeStatus(status)).toBeLessThanOrEqual(SLOTS);
        return;
      }
      if (Date.now() > deadline) {
        throw new Error(`${containers.length} warm containers: ${describeStatus(status)}`);
      }
      await sleep(100);
    }
  }

  // Samples the whole file: the pool's memory never exceeds its budget, and counts at least
  // the sandboxes it holds.
  const overBudget: string[] = [];
  let sampling: Promise<void> | undefined;
  let samples = 0;
  let stopped = false;
  beforeAll(() => {
    sampling = (async () => {
      while (!stopped) {
        const status = await poolStatus();
        const pooled = status.ready + status.starting;
        const overdrawn = status.reservedMemoryMb > status.memoryBudgetMb || pooled > SLOTS;
        // Evicted sandboxes still being removed count too, until they are gone.
        if (overdrawn || status.reservedMemoryMb < pooled * SANDBOX_MB) {
          overBudget.push(describeStatus(status));
        }
        samples += 1;
        await sleep(50);
      }
    })();
  });
  afterAll(async () => {
    stopped = true;
    await sampling;
  });

  async function create(
    name: string,
    client = tee.client,
    modules = handlerModules('return 1;'),
  ): Promise<string> {
    const { environment } = await client.environments.createEnvironment({
      ...modules,
      runtime: Runtime.DENO,
    });
    made.set(environment!.id, { name, client });
    return environment!.id;
  }

  /** Creates an environment and waits for its first warm sandbox to be ready. */
  async function createReady(name: string, client = tee.client): Promise<string> {
    const id = await create(name, client);
    await poolUntil(`${name} has a ready sandbox`, (status) => entry(status, id)?.ready === 1);
    return id;
  }

  async function execute(id: string, memoryMb = 0): Promise<Execution> {
    const { execution } = await made.get(id)!.client.executions.execute({
      environmentId: id,
      limits: { memoryMb },
    });
    expect(execution!.status, JSON.stringify(execution!.error)).toBe(ExecutionStatus.SUCCEEDED);
    return execution!;
  }

  /** Deletes what the test made (also when it failed); its warm sandboxes go with it. */
  async function deleteAll(): Promise<void> {
    const ids = [...made.keys()];
    for (const id of ids) await made.get(id)!.client.environments.deleteEnvironment({ id });
    await poolUntil('the deleted environments are gone from the pool', (status) =>
      ids.every((id) => entry(status, id) === undefined),
    );
    made.clear();
  }
  afterEach(deleteAll);

  it('evicts the least recently used environment’s sandbox for a new one; it then starts cold (EVICTED)', async () => {
    const oldest = await createReady('E1');
    const others: string[] = [];
    for (let i = 2; i <= SLOTS; i++) others.push(await createReady(`E${i}`));
    const full = await poolStatus();
    expect(full.ready, describeStatus(full)).toBe(SLOTS);
    expect(full.reservedMemoryMb).toBe(BUDGET_MB);
    expect(full.memoryBudgetMb).toBe(BUDGET_MB);
    // The budget is full and nothing else wants room: nothing is evicted.
    expect(full.evictions).toBe(0n);
    await containersMatchPool();

    const newest = await create(`E${SLOTS + 1}`);
    const roomed = await poolUntil(
      'the new environment has a ready sandbox',
      (status) => entry(status, newest)?.ready === 1,
    );
    expect(entry(roomed, oldest), describeStatus(roomed)).toMatchObject({
      ready: 0,
      starting: 0,
      evictions: 1n,
    });
    for (const id of others) {
      expect(entry(roomed, id), describeStatus(roomed)).toMatchObject({ ready: 1, evictions: 0n });
    }
    expect(roomed.evictions).toBe(1n);
    expect(roomed.reservedMemoryMb).toBe(BUDGET_MB);

    const cold = await execute(oldest);
    expect(cold.warm).toBe(false);
    expect(cold.coldStartReason).toBe(ColdStartReason.EVICTED);
    // In use again, it gets a sandbox back: the least recently used of the others gives way.
    const back = await poolUntil(
      'E1 has a ready sandbox again, E2 gave way',
      (status) => entry(status, oldest)!.ready >= 1 && entry(status, others[0]!)!.evictions === 1n,
    );
    expect(entry(back, oldest)).toMatchObject({ hits: 0n, misses: 1n });
    // The status lists the most recently used first.
    expect(back.environments[0]?.environmentId, describeStatus(back)).toBe(oldest);
    expect(timestampMs(entry(back, oldest)!.lastUsedTime!)).toBeGreaterThan(
      timestampMs(entry(back, newest)!.lastUsedTime!),
    );
    expect(entry(back, newest)!.evictions, describeStatus(back)).toBe(0n);
    const warm = await execute(oldest);
    expect(warm.warm).toBe(true);
    expect(warm.coldStartReason).toBe(ColdStartReason.UNSPECIFIED);
    const after = await poolStatus();
    expect(entry(after, oldest)).toMatchObject({ hits: 1n, misses: 1n });
    await containersMatchPool();
  }, 120_000);

  it('keeps an environment in use warm, with a second sandbox, while idle ones give way', async () => {
    const idle: string[] = [];
    for (let i = 1; i < SLOTS; i++) idle.push(await createReady(`I${i}`));
    const hot = await createReady('H');
    // Once the others have been idle for a while (10 s), H's second sandbox comes before their
    // first ones, and the least recently used gives way.
    const runs: Execution[] = [];
    const deadline = Date.now() + 60_000;
    let status = await poolStatus();
    while (!(held(status, hot) === 2 && entry(status, idle[0]!)!.evictions === 1n)) {
      if (Date.now() > deadline) {
        throw new Error(`H never got a second sandbox: ${describeStatus(status)}`);
      }
      runs.push(await execute(hot));
      await sleep(250);
      status = await poolStatus();
    }
    expect(runs.map((run) => [run.warm, run.coldStartReason])).toEqual(
      runs.map(() => [true, ColdStartReason.UNSPECIFIED]),
    );
    expect(entry(status, hot)).toMatchObject({ hits: BigInt(runs.length), misses: 0n });
    expect(entry(status, idle[0]!), describeStatus(status)).toMatchObject({ ready: 0 });
    for (const id of idle.slice(1)) {
      expect(entry(status, id), describeStatus(status)).toMatchObject({ ready: 1, evictions: 0n });
    }
    await containersMatchPool();
  }, 150_000);

  it('gives a tenant that comes later its fair share, taken from the tenant that holds the pool', async () => {
    const big: string[] = [];
    for (let i = 1; i <= SLOTS; i++) big.push(await createReady(`B${i}`));
    const late = await tee.clientOf('late');
    // Two tenants want sandboxes: each is due half the budget. Each of the late tenant's
    // environments takes the big tenant's least recently used sandbox, up to its share.
    const l1 = await createReady('L1', late);
    let status = await poolStatus();
    expect(entry(status, big[0]!), describeStatus(status)).toMatchObject({
      ready: 0,
      evictions: 1n,
    });
    const l2 = await createReady('L2', late);
    status = await poolUntil('B2 gave way', (s) => entry(s, big[1]!)?.evictions === 1n);
    expect(heldByTenant(status, 'late'), describeStatus(status)).toBe(SLOTS / 2);
    expect(heldByTenant(status, 'test')).toBe(SLOTS / 2);
    // Beyond its share, the late tenant's newest environment takes its own oldest one's place.
    const l3 = await create('L3', late);
    status = await poolUntil(
      'L3 has a ready sandbox, L1 gave way',
      (s) => entry(s, l3)?.ready === 1 && entry(s, l1)?.evictions === 1n,
    );
    expect(held(status, l1)).toBe(0);
    expect(held(status, l2)).toBe(1);
    expect(heldByTenant(status, 'late'), describeStatus(status)).toBe(SLOTS / 2);
    expect(heldByTenant(status, 'test')).toBe(SLOTS / 2);
    // And the big tenant's newest takes the place of its own oldest, not of the late tenant's.
    const b5 = await create(`B${SLOTS + 1}`);
    status = await poolUntil(
      'B5 has a ready sandbox, B3 gave way',
      (s) => entry(s, b5)?.ready === 1 && entry(s, big[2]!)?.evictions === 1n,
    );
    expect(heldByTenant(status, 'late'), describeStatus(status)).toBe(SLOTS / 2);
    expect(heldByTenant(status, 'test')).toBe(SLOTS / 2);
    expect(held(status, l2) + held(status, l3)).toBe(2);
    await containersMatchPool();

    const cold = await execute(l1);
    expect([cold.warm, cold.coldStartReason]).toEqual([false, ColdStartReason.EVICTED]);
    // L1 is in use again: it gets a sandbox within its tenant's share, in place of L2's.
    status = await poolUntil(
      'L1 has a ready sandbox, L2 gave way',
      (s) => entry(s, l1)?.ready === 1 && entry(s, l2)?.evictions === 1n,
    );
    expect(heldByTenant(status, 'late'), describeStatus(status)).toBe(SLOTS / 2);
    expect(heldByTenant(status, 'test')).toBe(SLOTS / 2);
    await containersMatchPool();
  }, 150_000);

  it('says why a call ran cold: LIMITS for other limits, with no hit or miss counted', async () => {
    const id = await createReady('X');
    const before = await poolStatus();
    const sized = await execute(id, 512);
    expect([sized.warm, sized.coldStartReason]).toEqual([false, ColdStartReason.LIMITS]);
    expect(sized.limits?.memoryMb).toBe(512);
    const after = await poolStatus();
    expect(entry(after, id), describeStatus(after)).toMatchObject({
      ready: 1,
      hits: 0n,
      misses: 0n,
    });
    expect([after.hits, after.misses]).toEqual([before.hits, before.misses]);
    const warm = await execute(id);
    expect([warm.warm, warm.coldStartReason]).toEqual([true, ColdStartReason.UNSPECIFIED]);
    const taken = await poolStatus();
    expect(entry(taken, id)).toMatchObject({ hits: 1n, misses: 0n });
    expect(taken.hits).toBe(before.hits + 1n);
  }, 60_000);

  it('says why a call ran cold: POOL_EMPTY when no sandbox was ready or starting, none evicted', async () => {
    // Two environments whose sandboxes take 20 s to import their module hold both starts
    // (TEE_POOL_MAX_STARTS, 2 by default): the next environment gets none meanwhile.
    const slow = {
      modules: {
        'main.ts':
          'await new Promise((resolve) => setTimeout(resolve, 20_000));\n' +
          'export function handler() { return 1; }\n',
      },
      mainModule: 'main.ts',
    };
    const slowIds = [await create('S1', tee.client, slow), await create('S2', tee.client, slow)];
    await poolUntil('S1 and S2 are starting', (s) =>
      slowIds.every((id) => entry(s, id)?.starting === 1),
    );
    const id = await create('Y');
    const before = await poolUntil('the pool knows Y', (s) => entry(s, id) !== undefined);
    expect(entry(before, id), describeStatus(before)).toMatchObject({ ready: 0, starting: 0 });
    const run = await execute(id);
    expect([run.warm, run.coldStartReason]).toEqual([false, ColdStartReason.POOL_EMPTY]);
    const after = await poolStatus();
    expect(entry(after, id), describeStatus(after)).toMatchObject({
      hits: 0n,
      misses: 1n,
      evictions: 0n,
    });
    expect(after.misses).toBe(before.misses + 1n);
    expect(after.evictions).toBe(before.evictions);
  }, 90_000);

  it('leaves nothing behind: no environment, no warm sandbox, no memory held, budget kept', async () => {
    for (const client of [tee.client, await tee.clientOf('late')]) {
      expect((await client.environments.listEnvironments({})).environments).toEqual([]);
    }
    const status = await poolUntil(
      'the pool is empty',
      (s) => s.environments.length === 0 && s.reservedMemoryMb === 0,
    );
    expect([status.ready, status.starting]).toEqual([0, 0]);
    await expectNothingLabelled(tee.stack.process.infrastructure.sandbox, {
      instanceId: tee.stack.config.instanceId,
      pool: 'warm',
    });
    expect(samples).toBeGreaterThan(0);
    expect(overBudget).toEqual([]);
  });
});

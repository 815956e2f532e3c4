// The fleet scenario of `npm run bench` (issue 14, part 3): many environments created over the
// run, from several tenants, each executed once right after creation as an agent's task would,
// while 4 hot environments take 80 % of the calls. Calls arrive as an open (Poisson) process at a
// stated fraction of the machine's fresh-sandbox capacity, measured first in the same run (pool
// off, concurrency 4). Reports the warm-hit rate and p50/p95 of the hot calls and of all calls.
// Runs alone too: `node bench/fleet.mjs` (after a build), printing its table.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import {
  call,
  createEnvironment,
  execute,
  quantile,
  root,
  round,
  sleep,
  startStack,
} from './lib.mjs';

const NEW_ENVIRONMENTS = Number(process.env.TEE_FLEET_NEW_ENVIRONMENTS ?? 100);
/** The fleet's call rate, as a fraction of the measured fresh-sandbox capacity. */
const LOAD = Number(process.env.TEE_FLEET_LOAD ?? 0.5);
const TENANTS = 3;
const HOT_ENVIRONMENTS = 4;
const HOT_SHARE = 0.8;
const WARM_UP_CALLS_PER_HOT = 5;
const CAPACITY_CONCURRENCY = 4;
const CAPACITY_CALLS = 40;
const PROGRESS_MS = 10_000;
const TARGETS = { hotHitRate: 0.95, hotP50Ms: 25 };
const POOL_STATUS = 'assist_tee.admin.v1.WarmPoolService/GetPoolStatus';

/** A tenant's API key, made the way an operator makes one. */
const tenantKey = (tenant) =>
  execFileSync(process.execPath, [`${root}services/standalone/dist/keys.js`, 'create', tenant], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'], // its notice on stderr is not for this table
  }).trim();

/** One exponentially distributed gap of a Poisson process with `perSecond` arrivals a second. */
const poissonGapMs = (perSecond) => (-Math.log(1 - Math.random()) * 1000) / perSecond;

function shuffle(items) {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/**
 * A client of one stack: environments it creates are remembered (with their tenant's key) so
 * that `deleteAll` removes them, whatever happened meanwhile.
 */
function fleetClient(url) {
  const created = new Map();
  return {
    async create(key) {
      const started = performance.now();
      const id = await createEnvironment(url, key);
      created.set(id, key);
      return { id, key, ms: performance.now() - started };
    },
    execute: (environment, i) => execute(url, environment.key, environment.id, i),
    async deleteAll() {
      const ids = [...created.keys()];
      const failures = [];
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let id = ids.pop(); id !== undefined; id = ids.pop()) {
            await call(
              url,
              'assist_tee.v1.EnvironmentService/DeleteEnvironment',
              { id },
              created.get(id),
            ).then(
              () => created.delete(id),
              (error) => failures.push(error.message),
            );
          }
        }),
      );
      if (failures.length > 0) throw new Error(`DeleteEnvironment failed: ${failures[0]}`);
    },
  };
}

/** Fresh executions per second of a stack with the pool off, CAPACITY_CONCURRENCY at a time. */
async function measureCapacity(serviceKey, key, log) {
  const stack = await startStack({
    TEE_SERVICE_KEY: serviceKey,
    TEE_POOL_MAX_PER_ENVIRONMENT: '0',
  });
  const client = fleetClient(stack.url);
  try {
    const environment = await client.create(key);
    await client.execute(environment, 0); // the image and the runtime in the page cache
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CAPACITY_CONCURRENCY }, async () => {
        while (next < CAPACITY_CALLS) await client.execute(environment, next++);
      }),
    );
    const perSecond = (CAPACITY_CALLS * 1000) / (performance.now() - started);
    log(`fleet: capacity ${round(perSecond)} fresh executions/s (pool off, concurrency 4)`);
    return perSecond;
  } finally {
    await client.deleteAll().finally(() => stack.stop());
  }
}

const COUNTERS = ['hits', 'misses', 'evictions'];

/**
 * The pool's figures. Its counters (uint64: strings in JSON, absent when 0) exist once the pool
 * reports each environment's tenant; before that they are undefined.
 */
async function poolStatus(url, serviceKey) {
  const status = await call(url, POOL_STATUS, {}, serviceKey);
  const environments = status.environments ?? [];
  const counted = environments.some((entry) => entry.tenantId !== undefined);
  const counters = (from) =>
    Object.fromEntries(
      COUNTERS.map((name) => [name, counted ? Number(from[name] ?? 0) : undefined]),
    );
  return {
    reservedMemoryMb: status.reservedMemoryMb ?? 0,
    memoryBudgetMb: status.memoryBudgetMb ?? 0,
    ...counters(status),
    environments: new Map(
      environments.map((entry) => [
        entry.environmentId,
        { ready: entry.ready ?? 0, starting: entry.starting ?? 0, ...counters(entry) },
      ]),
    ),
  };
}

/** The median latency of runs; null when there are none. */
function median(runs) {
  const ms = runs.map((run) => run.ms);
  return ms.length === 0 ? null : round(quantile(ms, 0.5));
}

/**
 * Warm-hit rate and latency quantiles of executions; the warm and cold ones' medians apart tell
 * a slow warm call (a busy machine) from a miss.
 */
function summary(runs) {
  const ms = runs.map((run) => run.ms);
  const warm = runs.filter((run) => run.warm);
  return {
    calls: runs.length,
    warm: warm.length,
    hitRate: runs.length === 0 ? 0 : round((1000 * warm.length) / runs.length) / 1000,
    p50: round(quantile(ms, 0.5)),
    p95: round(quantile(ms, 0.95)),
    warmP50: median(warm),
    coldP50: median(runs.filter((run) => !run.warm)),
  };
}

/**
 * The scenario, on stacks of its own: the capacity (pool off), then the fleet (default pool).
 * Resolves with its figures; everything it created is deleted, also on failure.
 */
export async function runFleet({ log = console.log } = {}) {
  const run = randomBytes(3).toString('hex');
  const serviceKey = `tee_service_fleet_${randomBytes(12).toString('hex')}`;
  // Tenants of this run alone, so no earlier run's leftovers count against their quotas.
  const keys = Array.from({ length: TENANTS }, (_, i) => tenantKey(`fleet-${run}-${i + 1}`));
  const capacity = await measureCapacity(serviceKey, keys[0], log);
  const perSecond = capacity * LOAD;
  log(`fleet: pacing all calls at ${round(perSecond)}/s (${LOAD * 100} % of capacity)`);

  const stack = await startStack({ TEE_SERVICE_KEY: serviceKey });
  const client = fleetClient(stack.url);
  let progress;
  try {
    const hot = [];
    for (let i = 0; i < HOT_ENVIRONMENTS; i++) hot.push(await client.create(keys[i % TENANTS]));
    // Warm-up: the hot environments' calls at their rate in the fleet, not counted.
    for (let i = 0; i < WARM_UP_CALLS_PER_HOT * HOT_ENVIRONMENTS; i++) {
      await sleep(poissonGapMs(perSecond * HOT_SHARE));
      await client.execute(hot[i % HOT_ENVIRONMENTS], i);
    }

    const hotCalls = Math.round((NEW_ENVIRONMENTS * HOT_SHARE) / (1 - HOT_SHARE));
    const arrivals = shuffle([
      ...Array(hotCalls).fill('hot'),
      ...Array(NEW_ENVIRONMENTS).fill('new'),
    ]);
    const runs = { hot: [], new: [] };
    const creates = [];
    const failures = [];
    const calls = [];
    const started = performance.now();
    progress = setInterval(() => {
      void poolStatus(stack.url, serviceKey).then(
        (pool) =>
          log(
            `fleet: ${runs.new.length}/${NEW_ENVIRONMENTS} new environments, ${runs.hot.length}/${hotCalls} hot calls, ` +
              `${runs.hot.filter((r) => r.warm).length} hot warm, pool ${pool.reservedMemoryMb}/${pool.memoryBudgetMb} MiB`,
          ),
        () => {},
      );
    }, PROGRESS_MS);
    let at = started;
    for (const [i, kind] of arrivals.entries()) {
      at += poissonGapMs(perSecond);
      // Behind schedule (a busy machine): the next arrival is due now.
      await sleep(Math.max(0, at - performance.now()));
      const task =
        kind === 'hot'
          ? client.execute(hot[Math.floor(Math.random() * HOT_ENVIRONMENTS)], i)
          : client.create(keys[i % TENANTS]).then((environment) => {
              creates.push(environment.ms);
              return client.execute(environment, i);
            });
      calls.push(
        task.then(
          (result) => runs[kind].push(result),
          (error) => failures.push(error.message),
        ),
      );
    }
    await Promise.all(calls);
    clearInterval(progress);
    const seconds = (performance.now() - started) / 1000;
    const { environments, ...pool } = await poolStatus(stack.url, serviceKey);
    if (failures.length > 0)
      log(`fleet: ${failures.length} calls failed, the first: ${failures[0]}`);

    const all = [...runs.hot, ...runs.new];
    const coldReasons = {};
    for (const { coldStartReason: reason = 'unreported' } of all.filter((r) => !r.warm)) {
      coldReasons[reason] = (coldReasons[reason] ?? 0) + 1;
    }
    const hotSummary = summary(runs.hot);
    return {
      capacityPerSecond: round(capacity),
      load: LOAD,
      ratePerSecond: round(perSecond),
      achievedPerSecond: round(arrivals.length / seconds),
      seconds: round(seconds),
      tenants: TENANTS,
      hotEnvironments: HOT_ENVIRONMENTS,
      newEnvironments: NEW_ENVIRONMENTS,
      hot: hotSummary,
      all: summary(all),
      new: summary(runs.new),
      createEnvironment: { p50: round(quantile(creates, 0.5)) },
      coldReasons,
      failures: failures.length,
      pool: { ...pool, hot: hot.map(({ id }) => environments.get(id) ?? null) },
      targets: {
        hotHitRate: hotSummary.hitRate >= TARGETS.hotHitRate,
        hotP50: hotSummary.p50 <= TARGETS.hotP50Ms,
      },
    };
  } finally {
    clearInterval(progress);
    await client.deleteAll().finally(() => stack.stop());
  }
}

const percent = (rate) => `${round(rate * 100)} %`;

/** Rows for bench.mjs's table: figure, median, spread with the warm-hit rate, no ratio. */
export function fleetRows(fleet) {
  const row = (name, figures) => [
    `fleet: ${name}`,
    `${figures.p50} ms`,
    `p95 ${figures.p95} ms, ${percent(figures.hitRate)} warm`,
    '',
  ];
  return [
    row('hot Execute', fleet.hot),
    row('all Execute', fleet.all),
    row('new environment Execute', fleet.new),
    ['fleet: CreateEnvironment', `${fleet.createEnvironment.p50} ms`, '', ''],
    [
      'fleet: call rate (Poisson)',
      `${fleet.ratePerSecond}/s`,
      `${percent(fleet.load)} of ${fleet.capacityPerSecond}/s fresh`,
      '',
    ],
  ];
}

/** The pool's totals, the cold starts' reasons and the targets, one line each. */
export function fleetNotes(fleet) {
  const { pool } = fleet;
  const counters = COUNTERS.map((name) => `${name} ${pool[name] ?? '—'}`).join(', ');
  const reasons = Object.entries(fleet.coldReasons).map(([reason, n]) => `${reason} ${n}`);
  const met = (yes) => (yes ? 'met' : 'missed');
  return [
    `(fleet: ${fleet.newEnvironments} new environments and ${fleet.hot.calls} hot calls over ${fleet.seconds} s from ` +
      `${fleet.tenants} tenants, ${fleet.failures} failed; pool at the end ${pool.reservedMemoryMb}/${pool.memoryBudgetMb} MiB, ${counters})`,
    `(fleet hot calls: warm p50 ${fleet.hot.warmP50 ?? '—'} ms, cold p50 ${fleet.hot.coldP50 ?? '—'} ms; ` +
      `cold starts: ${reasons.join(', ') || 'none'})`,
    `target hot hit >= ${TARGETS.hotHitRate * 100} %: ${met(fleet.targets.hotHitRate)} (${percent(fleet.hot.hitRate)})`,
    `target hot p50 <= ${TARGETS.hotP50Ms} ms: ${met(fleet.targets.hotP50)} (${fleet.hot.p50} ms)`,
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const fleet = await runFleet();
  console.log(`\n${'figure'.padEnd(32)}${'median'.padEnd(16)}spread`);
  for (const row of fleetRows(fleet))
    console.log(`${row[0].padEnd(32)}${row[1].padEnd(16)}${row[2]}`);
  for (const line of fleetNotes(fleet)) console.log(line);
  console.log(JSON.stringify(fleet, null, 2));
}

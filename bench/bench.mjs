// npm run bench: the figures of the README's Performance section, measured in one run against
// the naive baseline (`docker run --rm -i --runtime=runsc` of the same image and handler, event
// on stdin): one environment warm and cold, what a fresh sandbox costs (bench/fresh-cost.mjs),
// and a fleet of environments and tenants (bench/fleet.mjs).
// Starts its own standalone process (pool on, then pool off for cold runs) on a free port, or
// measures TEE_BENCH_URL (then without the cold figures, which need the pool off; it needs
// TEE_BENCH_API_KEY, a tenant's key, and TEE_SERVICE_KEY for the pool status).
// Prints a table and writes bench/results/latest.json.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import {
  call as callWithKey,
  createEnvironment as createEnvironmentWithKey,
  execute as executeWithKey,
  naiveRun,
  quantile,
  root,
  round,
  sleep,
  startStack as startStackWithEnv,
  throughput,
} from './lib.mjs';
import { fleetNotes, fleetRows, runFleet } from './fleet.mjs';
import { formatFreshCost, measureFreshCost } from './fresh-cost.mjs';
import { runSessions, sessionRows } from './sessions.mjs';

const WARM_CALLS = Number(process.env.TEE_BENCH_WARM_CALLS ?? 200);
const SERVICE_KEY =
  process.env.TEE_SERVICE_KEY ?? `tee_service_bench_${randomBytes(12).toString('hex')}`;
const TIGHT_LOOP_CALLS = 100;
/** Long enough for a used sandbox's removal (runsc teardown) to finish. */
const SETTLE_MS = 500;
const COLD_CALLS = 20;
const CREATE_CALLS = 20;
const THROUGHPUT_CALLS = { 1: 20, 4: 40, 16: 64 };
/** Says which scenario the bench is on: a whole run takes about a quarter of an hour. */
const step = (name) => console.log(`bench: ${name}`);
const startStack = (env) => startStackWithEnv({ TEE_SERVICE_KEY: SERVICE_KEY, ...env });
const call = (url, method, body, key = apiKey) => callWithKey(url, method, body, key);
const createEnvironment = (url) => createEnvironmentWithKey(url, apiKey);
const execute = (url, environmentId, i) => executeWithKey(url, apiKey, environmentId, i);

/**
 * Until a warm sandbox is ready and none is starting, then SETTLE_MS more for the last used
 * sandbox's removal: the machine is quiet, as between an agent's calls.
 */
async function waitForSettledPool(url, environmentId) {
  for (;;) {
    const status = await call(
      url,
      'assist_tee.admin.v1.WarmPoolService/GetPoolStatus',
      {},
      SERVICE_KEY,
    );
    const { environments = [] } = status;
    const pool = environments.find((entry) => entry.environmentId === environmentId);
    if ((pool?.ready ?? 0) > 0 && (pool?.starting ?? 0) === 0) break;
    await sleep(20);
  }
  await sleep(SETTLE_MS);
}

/** p50/p90/p99 of calls, and how many of them got a warm sandbox. */
function latencies(runs) {
  const ms = runs.map((run) => run.ms);
  return {
    calls: runs.length,
    warm: runs.filter((run) => run.warm).length,
    p50: round(quantile(ms, 0.5)),
    p90: round(quantile(ms, 0.9)),
    p99: round(quantile(ms, 0.99)),
  };
}

/** PSS and RSS (MiB) of every host process of a container (runsc sandbox, gofer, shim). */
function containerMemory(containerId) {
  let pss = 0;
  let rss = 0;
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(containerId)) continue;
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      pss += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
      rss += Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
    } catch {
      // The process ended while we looked.
    }
  }
  return { pssMiB: round(pss / 1024), rssMiB: round(rss / 1024) };
}

async function warmContainerId(environmentId) {
  const out = await new Promise((resolve) => {
    const child = spawn('docker', [
      'ps',
      '-q',
      '--no-trunc',
      '--filter',
      `label=dev.assist-tee.environment-id=${environmentId}`,
      '--filter',
      'label=dev.assist-tee.pool=warm',
    ]);
    let text = '';
    child.stdout.on('data', (chunk) => (text += chunk));
    child.on('exit', () => resolve(text.trim().split('\n')[0]));
  });
  return out;
}

const results = {
  machine: { cpus: (await import('node:os')).cpus().length },
  at: new Date().toISOString(),
};
const external = process.env.TEE_BENCH_URL;
// A tenant's key, made the way an operator makes one (in the database the stack uses).
const apiKey =
  process.env.TEE_BENCH_API_KEY ??
  execFileSync(process.execPath, [`${root}services/standalone/dist/keys.js`, 'create', 'bench'], {
    encoding: 'utf8',
  }).trim();
let stack = external ? { url: external, stop: async () => {} } : await startStack({});
const environmentId = await createEnvironment(stack.url);
await naiveRun(environmentId); // the image is in the page cache, as it is for the service

step('naive docker run baseline');
const naive = [];
for (let i = 0; i < COLD_CALLS; i++) naive.push((await naiveRun(environmentId, i)).ms);
results.naive = { p50: round(quantile(naive, 0.5)), p90: round(quantile(naive, 0.9)) };

// Warm: each call finds a ready sandbox on a quiet machine (an agent's calls, with its thinking
// in between). Tight loop: each call right after the previous answer, so it competes with the
// start of its replacement and the removal of the sandbox before it.
step('warm Execute');
const warm = [];
for (let i = 0; i < WARM_CALLS; i++) {
  await waitForSettledPool(stack.url, environmentId);
  warm.push(await execute(stack.url, environmentId, i));
}
results.warmExecute = latencies(warm);
step('warm Execute, tight loop');
const tight = [];
for (let i = 0; i < TIGHT_LOOP_CALLS; i++) tight.push(await execute(stack.url, environmentId, i));
results.warmExecuteTightLoop = latencies(tight);
await waitForSettledPool(stack.url, environmentId);
await sleep(2000);
results.idleWarmSandbox = containerMemory(await warmContainerId(environmentId));

step('CreateEnvironment');
const creates = [];
for (let i = 0; i < CREATE_CALLS; i++) {
  const started = performance.now();
  const id = await createEnvironment(stack.url);
  creates.push(performance.now() - started);
  await call(stack.url, 'assist_tee.v1.EnvironmentService/DeleteEnvironment', { id });
}
results.createEnvironment = { p50: round(quantile(creates, 0.5)) };

step('throughput against the baseline');
results.throughput = {};
for (const [concurrency, total] of Object.entries(THROUGHPUT_CALLS)) {
  const service = await throughput(
    (i) => execute(stack.url, environmentId, i),
    Number(concurrency),
    total,
  );
  const baseline = await throughput((i) => naiveRun(environmentId, i), Number(concurrency), total);
  results.throughput[concurrency] = { service, naive: baseline, ratio: round(service / baseline) };
}
await call(stack.url, 'assist_tee.v1.EnvironmentService/DeleteEnvironment', { id: environmentId });
await stack.stop();

if (!external) {
  step('cold Execute and the cost of a fresh sandbox (pool off)');
  stack = await startStack({ TEE_POOL_MAX_PER_ENVIRONMENT: '0' });
  const coldEnvironment = await createEnvironment(stack.url);
  const cold = [];
  for (let i = 0; i < COLD_CALLS; i++) cold.push((await execute(stack.url, coldEnvironment, i)).ms);
  results.coldExecute = { p50: round(quantile(cold, 0.5)), p90: round(quantile(cold, 0.9)) };
  await call(stack.url, 'assist_tee.v1.EnvironmentService/DeleteEnvironment', {
    id: coldEnvironment,
  });
  // What a fresh sandbox costs per runtime, and where it goes (against the naive baseline).
  results.freshCost = await measureFreshCost({ url: stack.url, apiKey, servicePid: stack.pid });
  await stack.stop();
  // On a stack of its own, quiet: session calls against fresh sandboxes.
  step('sessions');
  results.sessions = await runSessions({ log: step });
  // Last, on stacks of its own: its load does not disturb the figures above.
  step('fleet');
  results.fleet = await runFleet();
}

const ratio = (a, b) => (a === undefined ? '—' : `${Number((a / b).toPrecision(2))}×`);
const rows = [
  ['naive docker run (baseline)', `${results.naive.p50} ms`, `p90 ${results.naive.p90} ms`, '1×'],
  [
    'warm Execute',
    `${results.warmExecute.p50} ms`,
    `p90 ${results.warmExecute.p90} / p99 ${results.warmExecute.p99} ms`,
    ratio(results.warmExecute.p50, results.naive.p50),
  ],
  [
    'warm Execute, tight loop',
    `${results.warmExecuteTightLoop.p50} ms`,
    `p90 ${results.warmExecuteTightLoop.p90} / p99 ${results.warmExecuteTightLoop.p99} ms`,
    ratio(results.warmExecuteTightLoop.p50, results.naive.p50),
  ],
  [
    'cold Execute (pool off)',
    `${results.coldExecute?.p50 ?? '—'} ms`,
    `p90 ${results.coldExecute?.p90 ?? '—'} ms`,
    ratio(results.coldExecute?.p50, results.naive.p50),
  ],
  ['CreateEnvironment (no deps)', `${results.createEnvironment.p50} ms`, '', ''],
  ...Object.entries(results.throughput).map(([c, t]) => [
    `throughput, concurrency ${c}`,
    `${t.service}/s`,
    `naive ${t.naive}/s`,
    `${t.ratio}×`,
  ]),
  [
    'idle warm sandbox memory',
    `${results.idleWarmSandbox.pssMiB} MiB PSS`,
    `${results.idleWarmSandbox.rssMiB} MiB RSS`,
    '',
  ],
  ...(results.sessions ? sessionRows(results.sessions) : []),
  ...(results.fleet ? fleetRows(results.fleet) : []),
];
console.log(`\n${'figure'.padEnd(32)}${'median'.padEnd(16)}${'spread'.padEnd(28)}vs baseline`);
for (const row of rows)
  console.log(`${row[0].padEnd(32)}${row[1].padEnd(16)}${row[2].padEnd(28)}${row[3]}`);
for (const [name, figures] of [
  ['warm', results.warmExecute],
  ['tight loop', results.warmExecuteTightLoop],
]) {
  console.log(`(${name} calls that got a warm sandbox: ${figures.warm}/${figures.calls})`);
}
for (const line of results.fleet ? fleetNotes(results.fleet) : []) console.log(line);
if (results.freshCost) console.log(`\n${formatFreshCost(results.freshCost)}`);
writeFileSync(`${root}bench/results/latest.json`, `${JSON.stringify(results, null, 2)}\n`);
console.log('\nwritten to bench/results/latest.json');

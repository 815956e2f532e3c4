// What one fresh sandbox costs, in CPU-seconds of the whole machine, and where it goes: per
// runtime, N sequential Execute calls of the README's handler with the pool off (each one a
// fresh sandbox: created, started, run, removed), the naive `docker run --rm -i --runtime=runsc`
// of the same handler, and throughput of both at concurrency 4.
//
// `node bench/fresh-cost.mjs` (after `npx nx run-many -t build`) starts its own standalone stack
// with TEE_POOL_MAX_PER_ENVIRONMENT=0; bench/bench.mjs can call measureFreshCost against one.
// TEE_FRESH_CALLS (20), TEE_FRESH_THROUGHPUT_CALLS (40), TEE_FRESH_RUNTIMES (deno,bun),
// TEE_FRESH_BASELINE=0 (no naive runs, no throughput) and TEE_FRESH_OUT (a JSON file) tune it.
// Run it as root on an otherwise quiet machine: the figures are whole-machine deltas.
//
// Where each part is read (Linux, cgroup v1, Docker with runsc as a runtime):
// - machine: /proc/stat busy time, minus the idle machine's rate over the same wall time;
// - dockerd, containerd: /proc/<pid>/stat, own time plus reaped children's (containerd runs
//   `containerd-shim-runc-v2 start`, which forks the long-lived shim and exits);
// - shim and runsc commands: the long-lived shim (containerd-shim-runc-v2 running runsc) is
//   reparented to pid 1, which reaps it late and, measured, without its time showing in pid 1's
//   cutime; so BSD process accounting (acct(2)) is switched on for the measurement and its
//   records are summed by command name: `containerd-shim` (the shim itself) and `runsc` (create,
//   start, state, kill, delete, each run by the shim);
// - runsc sandbox and gofer: the container's cgroup; runsc puts both (and the ptrace stubs)
//   under /sys/fs/cgroup/cpuacct/docker/<id>/, and cgroup v1 charges every ancestor, so the
//   parent's cpuacct.usage keeps a removed container's time;
// - the service: its process; postgres and nats-server: their processes (a backend that ended
//   meanwhile is missed); the client: this process, plus its children (the docker CLI).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  call,
  createEnvironment,
  execute,
  naiveRun,
  quantile,
  root,
  sleep,
  startStack,
  throughput,
} from './lib.mjs';

const TICK_S = 0.01; // USER_HZ: /proc and acct count in 1/100 s
const DOCKER_CGROUP = '/sys/fs/cgroup/cpuacct/docker';
const IDLE_MS = 5_000;
/** Long enough for the last sandbox's removal (runsc teardown) to finish. */
const SETTLE_MS = 1_500;
const RUNTIME_NAMES = { RUNTIME_DENO: 'deno', RUNTIME_BUN: 'bun' };

const readText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/** Busy CPU-seconds of the whole machine since boot. */
function machineBusy() {
  const [, ...ticks] = readText('/proc/stat').split('\n')[0].trim().split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user, nice, system, , , irq, softirq, steal] = ticks;
  return (user + nice + system + irq + softirq + steal) * TICK_S;
}

/** A process's CPU-seconds, its own and those of children it has reaped. */
function processCpu(pid) {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return 0;
  const fields = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  // fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14–17
  return (fields[11] + fields[12] + fields[13] + fields[14]) * TICK_S;
}

function pidsNamed(name) {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry) && readText(`/proc/${entry}/comm`)?.trim() === name)
    .map(Number);
}

const sum = (values) => values.reduce((total, value) => total + value, 0);
const cgroupCpu = () => Number(readText(`${DOCKER_CGROUP}/cpuacct.usage`) ?? 0) / 1e9;
const runningContainers = () =>
  readdirSync(DOCKER_CGROUP, { withFileTypes: true }).filter((entry) => entry.isDirectory()).length;

/**
 * BSD process accounting into a temporary file, while `measure` runs: CPU-seconds of the
 * processes that ended meanwhile, by command name. Undefined when it cannot be switched on
 * (not root, no python3 for the acct(2) call).
 */
function processAccounting() {
  const dir = mkdtempSync(join(tmpdir(), 'fresh-cost-'));
  const file = join(dir, 'pacct');
  writeFileSync(file, '');
  const acct = (path) =>
    spawnSync('python3', [
      '-c',
      `import ctypes,sys; sys.exit(ctypes.CDLL(None).acct(${path === null ? 'None' : `b${JSON.stringify(path)}`}) != 0)`,
    ]).status === 0;
  if (!acct(file)) {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  return {
    /** Processes whose parent is `reapedBy` are left out: their time is in the parent's. */
    stop(reapedBy) {
      acct(null);
      const records = readFileSync(file);
      rmSync(dir, { recursive: true, force: true });
      const byCommand = {};
      // struct acct_v3: 64 bytes; ac_ppid at 20, ac_utime and ac_stime are comp_t at 32 and 34,
      // ac_comm at 48
      for (let at = 0; at + 64 <= records.length; at += 64) {
        if (records.readUInt32LE(at + 20) === reapedBy) continue;
        const comm = records.toString('latin1', at + 48, at + 64).replace(/\0.*$/s, '');
        const seconds =
          (compT(records.readUInt16LE(at + 32)) + compT(records.readUInt16LE(at + 34))) * TICK_S;
        byCommand[comm] = (byCommand[comm] ?? 0) + seconds;
      }
      return byCommand;
    },
  };
}

/** comp_t: 13-bit mantissa, 3-bit base-8 exponent. */
const compT = (value) => (value & 0x1fff) * 8 ** (value >> 13);

/** Every counter at once. */
function sample(servicePid) {
  const [dockerd] = pidsNamed('dockerd');
  const [containerd] = pidsNamed('containerd');
  return {
    at: performance.now(),
    machine: machineBusy(),
    dockerd: processCpu(dockerd),
    containerd: processCpu(containerd),
    sandbox: cgroupCpu(),
    service: servicePid === undefined ? 0 : processCpu(servicePid),
    // The service's database and broker: every execution writes its row and events.
    postgres: sum(pidsNamed('postgres').map(processCpu)),
    nats: sum(pidsNamed('nats-server').map(processCpu)),
    client: processCpu(process.pid),
  };
}

/** The idle machine's busy CPU-seconds per second. */
async function idleRate() {
  const before = sample();
  await sleep(IDLE_MS);
  const after = sample();
  return (after.machine - before.machine) / ((after.at - before.at) / 1000);
}

/**
 * Runs `work` (which makes `count` sandboxes) and returns CPU-seconds per sandbox: the machine's
 * (less the idle rate), and each part's.
 */
async function cpuPerSandbox({ work, count, servicePid, idle }) {
  const containers = runningContainers();
  const accounting = processAccounting();
  const before = sample(servicePid);
  await work();
  // Until the last sandbox is removed (others' containers may come and go: at most 10 s).
  for (let i = 0; i < 200 && runningContainers() > containers; i++) await sleep(50);
  await sleep(SETTLE_MS);
  const after = sample(servicePid);
  // `containerd-shim-runc-v2 start` is containerd's child: its time is in containerd's.
  const ended = accounting?.stop(pidsNamed('containerd')[0]);
  const wallS = (after.at - before.at) / 1000;
  const per = (seconds) => seconds / count;
  const parts = {
    dockerd: per(after.dockerd - before.dockerd),
    containerd: per(after.containerd - before.containerd),
    shim: ended === undefined ? undefined : per(ended['containerd-shim'] ?? 0),
    runscCommands: ended === undefined ? undefined : per(ended.runsc ?? 0),
    sandbox: per(after.sandbox - before.sandbox),
    service: per(after.service - before.service),
    postgres: per(after.postgres - before.postgres),
    nats: per(after.nats - before.nats),
    // The docker CLI of the naive runs is this process's child: it is in `client`.
    client: per(after.client - before.client),
  };
  const machine = per(after.machine - before.machine - idle * wallS);
  const known = sum(Object.values(parts).map((value) => value ?? 0));
  return { machine, ...parts, other: machine - known, wallS };
}

/**
 * The figures, against a running stack with the pool off (TEE_POOL_MAX_PER_ENVIRONMENT=0).
 * `apiKey` is a tenant's key; `servicePid` the stack's process, when it runs on this machine.
 * `baseline: false` leaves out the naive runs and the throughputs (fresh executions only).
 */
export async function measureFreshCost({
  url,
  apiKey,
  servicePid,
  runtimes = ['RUNTIME_DENO', 'RUNTIME_BUN'],
  baseline = true,
  calls = Number(process.env.TEE_FRESH_CALLS ?? 20),
  throughputCalls = Number(process.env.TEE_FRESH_THROUGHPUT_CALLS ?? 40),
  log = console.log,
}) {
  const idle = await idleRate();
  log(`fresh-cost: idle machine ${idle.toFixed(3)} CPU-s/s`);
  const results = { idleCpuPerSecond: idle, calls, runtimes: {} };
  for (const runtime of runtimes) {
    const name = RUNTIME_NAMES[runtime];
    const environmentId = await createEnvironment(url, apiKey, runtime);
    // Page cache and the service's first-call paths, as for a long-running service.
    await execute(url, apiKey, environmentId);
    const sequential = (label, run) => {
      const ms = [];
      return cpuPerSandbox({
        count: calls,
        servicePid,
        idle,
        work: async () => {
          for (let i = 0; i < calls; i++) {
            ms.push((await run(i)).ms);
            if ((i + 1) % 5 === 0) log(`fresh-cost: ${label} ${i + 1}/${calls}`);
          }
        },
      }).then((figures) => ({ ...figures, p50Ms: quantile(ms, 0.5) }));
    };
    const figures = {
      fresh: await sequential(name, (i) => execute(url, apiKey, environmentId, i)),
    };
    if (baseline) {
      await naiveRun(environmentId, 0, runtime);
      figures.naive = await sequential(`${name} naive`, (i) => naiveRun(environmentId, i, runtime));
      log(`fresh-cost: ${name} throughput at concurrency 4`);
      const fresh = await throughput(
        (i) => execute(url, apiKey, environmentId, i),
        4,
        throughputCalls,
      );
      const naive = await throughput(
        (i) => naiveRun(environmentId, i, runtime),
        4,
        throughputCalls,
      );
      figures.throughput4 = { fresh, naive, ratio: fresh / naive };
    }
    results.runtimes[name] = figures;
    await call(
      url,
      'assist_tee.v1.EnvironmentService/DeleteEnvironment',
      { id: environmentId },
      apiKey,
    );
  }
  return results;
}

const PARTS = [
  ['machine', 'whole machine'],
  ['dockerd', 'dockerd'],
  ['containerd', 'containerd'],
  ['shim', 'containerd-shim'],
  ['runscCommands', 'runsc commands'],
  ['sandbox', 'runsc sandbox+gofer'],
  ['service', 'service'],
  ['postgres', 'postgres'],
  ['nats', 'nats-server'],
  ['client', 'client (+docker CLI)'],
  ['other', 'other (remainder)'],
];

/** The table of measureFreshCost's results. */
export function formatFreshCost(results) {
  const cell = (value) => (value === undefined ? '—' : value.toFixed(3));
  const columns = Object.entries(results.runtimes).flatMap(([name, figures]) =>
    [
      [`${name} fresh`, figures.fresh],
      [`${name} naive`, figures.naive],
    ].filter(([, column]) => column !== undefined),
  );
  const lines = [
    `CPU-seconds per sandbox (${results.calls} sequential; idle ${results.idleCpuPerSecond.toFixed(3)} CPU-s/s subtracted)`,
    `${'part'.padEnd(24)}${columns.map(([title]) => title.padStart(13)).join('')}`,
    ...PARTS.map(
      ([key, title]) =>
        `${title.padEnd(24)}${columns.map(([, figures]) => cell(figures[key]).padStart(13)).join('')}`,
    ),
    `${'p50 latency (ms)'.padEnd(24)}${columns.map(([, figures]) => figures.p50Ms.toFixed(0).padStart(13)).join('')}`,
    '',
    ...Object.entries(results.runtimes)
      .filter(([, { throughput4 }]) => throughput4 !== undefined)
      .map(
        ([name, { throughput4 }]) =>
          `${name}: throughput at concurrency 4: fresh ${throughput4.fresh}/s, naive ${throughput4.naive}/s, ratio ${throughput4.ratio.toFixed(2)}×`,
      ),
  ];
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const serviceKey = `tee_service_bench_${randomBytes(12).toString('hex')}`;
  const apiKey = execFileSync(
    process.execPath,
    [`${root}services/standalone/dist/keys.js`, 'create', 'bench'],
    { encoding: 'utf8' },
  ).trim();
  const stack = await startStack({
    TEE_SERVICE_KEY: serviceKey,
    TEE_POOL_MAX_PER_ENVIRONMENT: '0',
  });
  try {
    const results = await measureFreshCost({
      url: stack.url,
      apiKey,
      servicePid: stack.pid,
      // e.g. TEE_FRESH_RUNTIMES=deno TEE_FRESH_BASELINE=0: Deno's fresh executions only
      runtimes: (process.env.TEE_FRESH_RUNTIMES ?? 'deno,bun')
        .split(',')
        .map((name) => `RUNTIME_${name.trim().toUpperCase()}`),
      baseline: process.env.TEE_FRESH_BASELINE !== '0',
    });
    console.log(`\n${formatFreshCost(results)}`);
    const out = process.env.TEE_FRESH_OUT;
    if (out) writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  } finally {
    await stack.stop();
  }
}

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLogger } from '@assist-tee/logger';
import {
  createDockerClient,
  environmentVolumeName,
  SandboxDriver,
  type SandboxLimits,
  type SandboxSpec,
} from '@assist-tee/sandbox';
import { expectNothingLabelled, removeLabelled, uniqueSuffix } from '@assist-tee/testing';
import { buildDenoImage, DENO_RUNNER_PATH, denoRuntime } from '../src/index.js';
import { eventFor, median, runSandbox, type RunReport } from './harness.js';
import { testModules } from './modules.js';

const MiB = 1024 * 1024;
const runtime = process.env.TEE_SANDBOX_RUNTIME ?? 'runsc';
const docker = createDockerClient({
  socketPath: process.env.TEE_DOCKER_SOCKET ?? '/var/run/docker.sock',
});
const logger = createLogger({ level: process.env.TEE_TEST_LOG_LEVEL ?? 'silent' });
const driver = new SandboxDriver({ docker, logger, runtime });
const instanceId = `test-runtime-deno-${uniqueSuffix()}`;
const environmentId = randomUUID();
const volume = environmentVolumeName(environmentId);

const defaultLimits: SandboxLimits = {
  memoryBytes: 256 * MiB,
  nanoCpus: 1_000_000_000,
  pidsLimit: 256,
  tmpfsBytes: 64 * MiB,
};

/** A sandbox of the test environment; `extraFlags` go before the runner (e.g. more permissions). */
function spec(
  mainModule: string,
  options: { limits?: Partial<SandboxLimits>; extraFlags?: string[] } = {},
): SandboxSpec {
  let cmd = denoRuntime.command(mainModule);
  // deno refuses --allow-all next to narrower --allow-* flags.
  if (options.extraFlags?.includes('--allow-all'))
    cmd = cmd.filter((arg) => !arg.startsWith('--allow-'));
  if (options.extraFlags) cmd.splice(cmd.indexOf(DENO_RUNNER_PATH), 0, ...options.extraFlags);
  return {
    image: denoRuntime.image,
    cmd,
    env: denoRuntime.env,
    volume: { name: volume, target: denoRuntime.codeDir, readOnly: true },
    limits: { ...defaultLimits, ...options.limits },
    labels: { owner: 'test', instanceId, environmentId, executionId: randomUUID() },
  };
}

/** Runs a sandbox and checks that nothing of it is left afterwards. */
async function run(sandboxSpec: SandboxSpec, options: Parameters<typeof runSandbox>[2] = {}) {
  const report = await runSandbox(driver, sandboxSpec, options);
  await expectNothingLabelled(driver, { instanceId, executionId: sandboxSpec.labels.executionId });
  return report;
}

function onlyResult(report: RunReport) {
  expect(report.results, JSON.stringify(report)).toHaveLength(1);
  return report.results[0]!;
}

function logMessages(report: RunReport): string[] {
  return report.frames.flatMap((frame) => (frame.type === 'log' ? [frame.message] : []));
}

beforeAll(async () => {
  await driver.ping();
  expect(await driver.hasRuntime()).toBe(true);
  await buildDenoImage(driver, logger);
  await driver.createVolume(volume, { owner: 'test', instanceId, environmentId });
  await driver.writeFiles({
    image: denoRuntime.image,
    volume,
    target: denoRuntime.codeDir,
    files: Object.entries(testModules).map(([path, content]) => ({ path, content })),
    labels: { owner: 'test', instanceId, environmentId },
  });
});

afterAll(async () => {
  try {
    await driver.removeVolume(volume);
    await expectNothingLabelled(driver, { instanceId });
  } finally {
    await removeLabelled(driver, { instanceId });
  }
});

describe.concurrent('the deno runtime in a runsc sandbox', () => {
  test('runs a two-module handler and returns its result under the nonce', async () => {
    const report = await run(spec('main.ts'), {
      event: eventFor({ n: 21 }, { GREETING: 'hello' }, 5_000),
    });
    expect(report.exit).toEqual({ exitCode: 0, oomKilled: false });
    expect(report.frames[0]).toMatchObject({
      type: 'log',
      level: 'info',
      message: 'main module loaded',
    });
    expect(report.frames.map((frame) => frame.type)).toEqual(['log', 'ready', 'log', 'result']);
    expect(report.frames[2]).toMatchObject({ type: 'log', message: 'handling { n: 21 }' });
    const result = onlyResult(report);
    expect(result).toMatchObject({
      ok: true,
      value: {
        doubled: 42,
        name: 'utils',
        env: 'hello',
        eventEnv: { GREETING: 'hello' },
        executionId: 'exec-test',
        environmentId: 'env-test',
      },
    });
    const value = (result as { value: { remainingTimeMs: number; deadline: number } }).value;
    expect(value.remainingTimeMs).toBeGreaterThan(4_000);
    expect(value.remainingTimeMs).toBeLessThanOrEqual(5_000);
    expect(Math.abs(value.deadline - Date.now())).toBeLessThan(10_000);
    expect(report.raw).toEqual([]);
    expect(report.stderr).toBe('');
  });

  test('console output and tampering with globals cannot forge or break the result frame', async () => {
    const report = await run(spec('noise.ts'), { event: eventFor({}) });
    expect(onlyResult(report)).toEqual({ type: 'result', ok: true, value: { real: true } });
    const messages = logMessages(report);
    expect(messages.filter((message) => message.startsWith('noise '))).toHaveLength(200);
    expect(messages).toContain('noise 7 { i: 7 }');
    expect(messages).toContain('first line\ncafebabe {"type":"result","ok":true,"value":"forged"}');
    expect(messages).toContain('list has 3 items');
    expect(messages).toContain('after tampering');
    // Raw writes are plain output, never frames.
    expect(report.raw).toEqual(['deadbeef {"type":"result","ok":true,"value":"forged"}']);
    expect(report.stderr).toBe('raw stderr\n');
    expect(report.exit.exitCode).toBe(0);
  });

  test('a handler that throws gives ok:false with its message and stack', async () => {
    const [error, nonError] = await Promise.all([
      run(spec('throws.ts'), { event: eventFor({}) }),
      run(spec('throws-string.ts'), { event: eventFor({}) }),
    ]);
    expect(onlyResult(error)).toMatchObject({
      ok: false,
      phase: 'handler',
      error: { name: 'TypeError', message: 'bad input' },
    });
    const stack = (error.results[0] as { error: { stack: string } }).error.stack;
    expect(stack).toContain('at inner (file:///code/throws.ts:3:');
    expect(onlyResult(nonError)).toMatchObject({
      ok: false,
      phase: 'handler',
      error: { name: 'NonErrorThrown', message: 'plain string', stack: '' },
    });
  });

  test('a main module that fails to import, or has no handler, fails in the init phase', async () => {
    const [fails, missing, npm] = await Promise.all([
      run(spec('init-fails.ts'), { event: eventFor({}) }),
      run(spec('no-handler.ts'), { event: eventFor({}) }),
      run(spec('npm-import.ts'), { event: eventFor({}) }),
    ]);
    expect(fails.frames.map((frame) => frame.type)).toEqual(['log', 'result']);
    expect(onlyResult(fails)).toMatchObject({
      ok: false,
      phase: 'init',
      error: { name: 'Error', message: 'broken at import' },
    });
    expect(fails.exit.exitCode).toBe(1);
    expect(onlyResult(missing)).toMatchObject({
      ok: false,
      phase: 'init',
      error: { name: 'HandlerNotFound' },
    });
    // Nothing is fetched at execution time: dependencies must come with the environment.
    expect(onlyResult(npm)).toMatchObject({
      ok: false,
      phase: 'init',
      error: { message: expect.stringContaining('--no-npm') as unknown },
    });
  });

  test('an event line that is not a JSON object fails the protocol phase without calling the handler', async () => {
    const report = await run(spec('main.ts'), { eventLine: '{"data": oops' });
    expect(onlyResult(report)).toMatchObject({
      ok: false,
      phase: 'protocol',
      error: { name: 'SyntaxError' },
    });
    expect(logMessages(report)).toEqual(['main module loaded']);
    expect(report.exit.exitCode).toBe(1);
  });

  test('results that are not JSON, undefined, floating rejections and leftover timers', async () => {
    const [bigint, undef, rejection, timers] = await Promise.all([
      run(spec('bigint.ts'), { event: eventFor({}) }),
      run(spec('undefined.ts'), { event: eventFor({}) }),
      run(spec('rejection.ts'), { event: eventFor({}) }),
      run(spec('timers.ts'), { event: eventFor({}) }),
    ]);
    expect(onlyResult(bigint)).toMatchObject({
      ok: false,
      phase: 'handler',
      error: { name: 'ResultSerializationError' },
    });
    expect(onlyResult(undef)).toEqual({ type: 'result', ok: true, value: null });
    expect(onlyResult(rejection)).toMatchObject({
      ok: false,
      phase: 'handler',
      error: { name: 'RangeError', message: 'floating rejection' },
    });
    // The runner exits right after the result: an interval does not keep the sandbox alive.
    expect(onlyResult(timers)).toEqual({ type: 'result', ok: true, value: 'done' });
    expect(timers.exit.exitCode).toBe(0);
    expect(timers.timings.exited - timers.timings.result!).toBeLessThan(2_000);
  });

  test('an endless loop is stopped by kill(), and `exited` resolves', async () => {
    let killedAt = 0;
    const report = await run(spec('loop.ts'), {
      event: eventFor({}),
      afterEvent: (control) => {
        setTimeout(() => {
          killedAt = performance.now();
          void control.kill().then(() => control.kill()); // idempotent
        }, 300);
      },
    });
    expect(killedAt).toBeGreaterThan(0);
    expect(report.results).toEqual([]);
    expect(report.exit).toEqual({ exitCode: 137, oomKilled: false });
  });

  test('`exited` resolves when the container is removed while it runs', async () => {
    const report = await run(spec('loop.ts'), {
      event: eventFor({}),
      afterEvent: (control) => void control.remove().then(() => control.remove()),
    });
    expect(report.results).toEqual([]);
    expect(report.exit.exitCode).toBe(137);
  });

  test('a container killed from outside the driver exits 137 and is not taken for an OOM', async () => {
    const loop = spec('loop.ts');
    const report = await run(loop, {
      event: eventFor({}),
      afterEvent: () => {
        void (async () => {
          const [container] = await driver.listContainers({ executionId: loop.labels.executionId });
          await docker.getContainer(container!.id).kill();
        })();
      },
    });
    expect(report.exit).toEqual({ exitCode: 137, oomKilled: false });
  });

  test('a memory bomb is OOM-killed at the memory limit', async () => {
    const report = await run(spec('oom.ts', { limits: { memoryBytes: 128 * MiB } }), {
      event: eventFor({}),
    });
    expect(report.results).toEqual([]);
    expect(report.exit).toEqual({ exitCode: 137, oomKilled: true });
  });

  test('a JS-heap bomb under a large limit dies at the V8 heap limit first (exit 133), not the cgroup one', async () => {
    // gVisor shows the memory limit as the machine's memory and V8 sizes its heap from it: above
    // about 300 MiB the heap limit is reached before the cgroup limit. The execution service
    // must classify this exit as running out of memory too.
    const report = await run(spec('heap.ts', { limits: { memoryBytes: 512 * MiB } }), {
      event: eventFor({}),
    });
    expect(report.results).toEqual([]);
    expect(report.exit).toEqual({ exitCode: 133, oomKilled: false });
    expect(report.stderr).toContain('Fatal JavaScript out of memory');
  });

  test('there is no network: no permission, and none even when deno would allow it', async () => {
    const [denied, allowed] = await Promise.all([
      run(spec('fetch.ts'), { event: eventFor({}) }),
      run(spec('fetch.ts', { extraFlags: ['--allow-net'] }), { event: eventFor({}) }),
    ]);
    const deniedValue = (onlyResult(denied) as { value: string[] }).value;
    for (const line of deniedValue) expect(line).toMatch(/NotCapable: Requires net access/);
    // With deno's permission granted, the container still has no route anywhere: not to the
    // internet, and not to the host's Docker bridge (a refused connection would mean a path).
    const [dns, internet, host] = (onlyResult(allowed) as { value: string[] }).value;
    expect(dns).toMatch(/^example\.com: TypeError: /);
    expect(internet).toMatch(/^1\.1\.1\.1: .*\(os error (101|113)\)$/);
    expect(host).toMatch(/^docker0: .*\(os error (101|113)\)$/);
  });

  test('the code volume and the root filesystem are read-only; /tmp is writable', async () => {
    const [denied, allowed] = await Promise.all([
      run(spec('write.ts'), { event: eventFor({}) }),
      run(spec('write.ts', { extraFlags: ['--allow-write'] }), { event: eventFor({}) }),
    ]);
    const deniedValue = (onlyResult(denied) as { value: Record<string, string> }).value;
    for (const outcome of Object.values(deniedValue)) expect(outcome).toMatch(/^NotCapable/);
    const allowedValue = (onlyResult(allowed) as { value: Record<string, string> }).value;
    // The files are root's and the mounts read-only (see the inspect test): either refuses.
    for (const path of ['/code/new.txt', '/code/main.ts', '/runner/runner.ts', '/etc/passwd']) {
      expect(allowedValue[path]).toMatch(/\(os error (13|30)\)/);
    }
    expect(allowedValue['/tmp/scratch.txt']).toBe('written');
  });

  test('runs as uid 1000 without capabilities, under the sandbox runtime and the container rules', async () => {
    const report = await run(
      // Deno wants --allow-all for /proc/self; the container must hold even then.
      spec('whoami.ts', { extraFlags: ['--allow-all'] }),
      { event: eventFor({}) },
    );
    const value = (onlyResult(report) as { value: Record<string, unknown> }).value;
    expect(value).toMatchObject({ uid: 1000, gid: 1000, cwd: '/code' });
    expect(value.capEff).toMatch(/^0+$/);
    // The runtime's environment and nothing of the host's; deno itself adds its node shim.
    const expectedEnv: Record<string, string> = Object.fromEntries(
      denoRuntime.env.map((entry) => [
        entry.slice(0, entry.indexOf('=')),
        entry.slice(entry.indexOf('=') + 1),
      ]),
    );
    expect(value.env).toEqual({
      ...expectedEnv,
      HOSTNAME: 'sandbox',
      PATH: `/tmp/deno/node_compat_bin:${expectedEnv.PATH}`,
      DENO_NODE_SHIM_ACTIVE: '1',
    });

    // Inspect a live one for the container rules.
    const loop = spec('loop.ts', { limits: { memoryBytes: 200 * MiB, pidsLimit: 300 } });
    let inspected:
      Awaited<ReturnType<ReturnType<typeof docker.getContainer>['inspect']>> | undefined;
    await run(loop, {
      event: eventFor({}),
      afterEvent: (control) => {
        void (async () => {
          const [container] = await driver.listContainers({ executionId: loop.labels.executionId });
          inspected = await docker.getContainer(container!.id).inspect();
          await control.kill();
        })();
      },
    });
    const host = inspected!.HostConfig;
    expect(host.Runtime).toBe(runtime);
    expect(host.NetworkMode).toBe('none');
    expect(host.ReadonlyRootfs).toBe(true);
    expect(host.CapDrop).toEqual(['ALL']);
    expect(host.SecurityOpt).toEqual(['no-new-privileges']);
    expect(host.Memory).toBe(200 * MiB);
    expect(host.MemorySwap).toBe(200 * MiB);
    expect(host.PidsLimit).toBe(300);
    expect(host.LogConfig?.Type).toBe('none');
    expect(host.Tmpfs).toEqual({ '/tmp': `rw,nosuid,nodev,noexec,size=${64 * MiB}` });
    expect(inspected!.Config.User).toBe('1000:1000');
    expect(inspected!.Mounts).toEqual([
      expect.objectContaining({ Type: 'volume', Name: volume, Destination: '/code', RW: false }),
    ]);
    expect(inspected!.Config.Labels).toMatchObject({
      'dev.assist-tee.managed': 'true',
      'dev.assist-tee.owner': 'test',
      'dev.assist-tee.instance-id': instanceId,
      'dev.assist-tee.environment-id': environmentId,
      'dev.assist-tee.execution-id': loop.labels.executionId,
    });
  });
});

describe('timing', () => {
  test('start → ready → result, one sandbox at a time', async () => {
    const runs: RunReport[] = [];
    for (let i = 0; i < 5; i++) {
      runs.push(await run(spec('main.ts'), { event: eventFor({ n: i }) }));
    }
    for (const report of runs) expect(onlyResult(report)).toMatchObject({ ok: true });
    const timings = {
      started: median(runs.map((report) => report.timings.started)),
      ready: median(runs.map((report) => report.timings.ready!)),
      result: median(runs.map((report) => report.timings.result!)),
      exited: median(runs.map((report) => report.timings.exited)),
    };
    console.log(`median ms over ${runs.length} runs (from before start()):`, timings);
    expect(timings.result).toBeLessThan(3_000);
  });
});

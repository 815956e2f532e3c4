// The sandbox suite every runtime passes: the runner protocol, outcomes and the container's
// rules, driven through SandboxDriver the way the execution service drives it. A runtime's
// test file calls useRuntimeSandbox() and describeSandboxSuite(), then adds its own probes
// (permission flags, engine specifics) with the same fixture.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLogger, type Logger } from '@assist-tee/logger';
import type { SandboxRuntime } from '../src/runtime.js';
import {
  createDockerClient,
  environmentVolumeName,
  SandboxDriver,
  type SandboxLimits,
  type SandboxSpec,
} from '@assist-tee/sandbox';
import { expectNothingLabelled, removeLabelled, uniqueSuffix } from '@assist-tee/testing';
import {
  eventFor,
  expectOomKilled,
  logMessages,
  onlyResult,
  runSandbox,
  type RunOptions,
  type RunReport,
} from './harness.js';
import { type ModuleDialect, sharedModules } from './modules.js';

const MiB = 1024 * 1024;

/** A runtime as the suite sees it: how to build and run it, and how it differs. */
export interface RuntimeUnderTest {
  runtime: SandboxRuntime;
  buildImage: (driver: SandboxDriver, logger: Logger) => Promise<string>;
  dialect: ModuleDialect;
  /** Modules for the runtime's own probes, stored next to the shared ones. */
  ownModules?: Record<string, string>;
  /** The command with every permission the runtime itself can grant: the container must hold
   * even then. */
  unrestricted: (command: string[]) => string[];
  /** How the runtime's console shows a flat object of numbers. */
  inspectFlat: (record: Record<string, number>) => string;
  /** What importing dialect.missingPackage fails with. */
  missingPackageError: RegExp;
  /** What the runtime itself adds to (or changes in) the process environment. */
  ownEnv: Record<string, string>;
  /** How fetch() fails when there is no route to the address. */
  noRoute: RegExp;
}

export interface RuntimeSandbox {
  readonly driver: SandboxDriver;
  readonly docker: ReturnType<typeof createDockerClient>;
  /** The engine's sandbox runtime (runsc). */
  readonly engineRuntime: string;
  readonly instanceId: string;
  readonly environmentId: string;
  readonly volume: string;
  /** A sandbox of the test environment running `mainModule`. */
  spec: (
    mainModule: string,
    options?: {
      limits?: Partial<SandboxLimits>;
      allowNet?: string[];
      /** Changes the command (e.g. more permissions). */
      command?: (command: string[]) => string[];
    },
  ) => SandboxSpec;
  /** Runs a sandbox and checks that nothing of it is left afterwards. */
  run: (spec: SandboxSpec, options?: RunOptions) => Promise<RunReport>;
}

const defaultLimits: SandboxLimits = {
  memoryBytes: 256 * MiB,
  nanoCpus: 1_000_000_000,
  pidsLimit: 256,
  tmpfsBytes: 64 * MiB,
};

/** Builds the runtime's image and fills one environment volume before the file's tests, and
 * removes everything after them. */
export function useRuntimeSandbox(target: RuntimeUnderTest): RuntimeSandbox {
  const { runtime } = target;
  const engineRuntime = process.env.TEE_SANDBOX_RUNTIME ?? 'runsc';
  const docker = createDockerClient({
    socketPath: process.env.TEE_DOCKER_SOCKET ?? '/var/run/docker.sock',
  });
  const logger = createLogger({ level: process.env.TEE_TEST_LOG_LEVEL ?? 'silent' });
  const driver = new SandboxDriver({ docker, logger, runtime: engineRuntime });
  const instanceId = `test-runtime-${runtime.name}-${uniqueSuffix()}`;
  const environmentId = randomUUID();
  const volume = environmentVolumeName(environmentId);

  beforeAll(async () => {
    await driver.ping();
    expect(await driver.hasRuntime()).toBe(true);
    await target.buildImage(driver, logger);
    await driver.createVolume(volume, { owner: 'test', instanceId, environmentId });
    const modules = { ...sharedModules(target.dialect), ...target.ownModules };
    await driver.writeFiles({
      image: runtime.image,
      volume,
      target: runtime.codeDir,
      files: Object.entries(modules).map(([path, content]) => ({ path, content })),
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

  return {
    driver,
    docker,
    engineRuntime,
    instanceId,
    environmentId,
    volume,
    spec: (mainModule, options = {}) => {
      const run = { mainModule, allowNet: options.allowNet ?? [], dependencies: false };
      const command = runtime.command(run);
      return {
        image: runtime.image,
        cmd: options.command ? options.command(command) : command,
        env: runtime.env(run),
        volume: { name: volume, target: runtime.codeDir, readOnly: true },
        limits: { ...defaultLimits, ...options.limits },
        labels: { owner: 'test', instanceId, environmentId, executionId: randomUUID() },
      };
    },
    run: async (spec, options = {}) => {
      const report = await runSandbox(driver, spec, options);
      await expectNothingLabelled(driver, { instanceId, executionId: spec.labels.executionId });
      return report;
    },
  };
}

/** The tests every runtime passes. */
export function describeSandboxSuite(target: RuntimeUnderTest, sandbox: RuntimeSandbox): void {
  const { runtime } = target;
  const { spec, run } = sandbox;

  describe.concurrent(`the ${runtime.name} runtime in a sandbox`, () => {
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
      expect(report.frames[2]).toMatchObject({
        type: 'log',
        message: `handling ${target.inspectFlat({ n: 21 })}`,
      });
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

    test('console output and tampering with globals cannot forge, break or read the frames', async () => {
      const report = await run(spec('noise.ts'), { event: eventFor({ n: 1 }) });
      expect(onlyResult(report)).toEqual({
        type: 'result',
        ok: true,
        value: { real: true, data: { n: 1 } },
      });
      const messages = logMessages(report);
      expect(messages.filter((message) => message.startsWith('noise '))).toHaveLength(200);
      expect(messages).toContain('noise 9 xx');
      expect(messages).toContain(
        'first line\ncafebabe {"type":"result","ok":true,"value":"forged"}',
      );
      expect(messages).toContain('list has 3 items');
      expect(messages).toContain('after tampering');
      // Raw writes are plain output, never frames.
      expect(report.raw).toEqual(['deadbeef {"type":"result","ok":true,"value":"forged"}']);
      // Whatever the tampered globals were handed, the nonce was not among it.
      const stderr = report.stderr.split('\n');
      expect(stderr).toEqual(
        expect.arrayContaining(['leak: armed', 'leak: species armed', 'raw stderr']),
      );
      expect(report.stderr).not.toContain(report.nonce);
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
      expect(stack).toMatch(/at inner \((file:\/\/)?\/code\/throws\.ts:3:/);
      expect(onlyResult(nonError)).toMatchObject({
        ok: false,
        phase: 'handler',
        error: { name: 'NonErrorThrown', message: 'plain string', stack: '' },
      });
    });

    test('a main module that fails to import, or has no handler, fails in the init phase', async () => {
      const [fails, missing, uninstalled] = await Promise.all([
        run(spec('init-fails.ts'), { event: eventFor({}) }),
        run(spec('no-handler.ts'), { event: eventFor({}) }),
        run(spec('missing-package.ts'), { event: eventFor({}) }),
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
      expect(onlyResult(uninstalled)).toMatchObject({
        ok: false,
        phase: 'init',
        error: { message: expect.stringMatching(target.missingPackageError) as unknown },
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

    test('results that are not JSON, undefined, uncaught errors and leftover timers', async () => {
      const [bigint, undef, rejection, uncaught, timers] = await Promise.all([
        run(spec('bigint.ts'), { event: eventFor({}) }),
        run(spec('undefined.ts'), { event: eventFor({}) }),
        run(spec('rejection.ts'), { event: eventFor({}) }),
        run(spec('uncaught.ts'), { event: eventFor({}) }),
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
      expect(onlyResult(uncaught)).toMatchObject({
        ok: false,
        phase: 'handler',
        error: { name: 'SyntaxError', message: 'thrown from a timer' },
      });
      // The runner exits by itself once stdin closes after the result (exit code 0, not a
      // kill): the interval and the 1e9 ms timer it leaves do not keep the sandbox alive. The
      // bound is loose on purpose: only not waiting for those timers is asserted, not a speed.
      expect(onlyResult(timers)).toEqual({ type: 'result', ok: true, value: 'done' });
      expect(timers.exit.exitCode).toBe(0);
      expect(timers.timings.exited - timers.timings.result!).toBeLessThan(15_000);
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
            const [container] = await sandbox.driver.listContainers({
              executionId: loop.labels.executionId,
            });
            await sandbox.docker.getContainer(container!.id).kill();
          })();
        },
      });
      expect(report.exit).toEqual({ exitCode: 137, oomKilled: false });
    });

    test('a memory bomb is OOM-killed at the memory limit', async () => {
      const report = await run(spec('oom.ts', { limits: { memoryBytes: 128 * MiB } }), {
        event: eventFor({}),
      });
      expectOomKilled(report);
    });

    test('there is no route out, even with the runtime allowing the network', async () => {
      const report = await run(
        spec('fetch.ts', {
          allowNet: ['example.com', '1.1.1.1', '172.17.0.1'],
          command: target.unrestricted,
        }),
        { event: eventFor({}) },
      );
      // No name resolution, no route to the internet, and none to the host's Docker bridge (a
      // refused connection would mean there is a path).
      const [dns, internet, host] = (onlyResult(report) as { value: string[] }).value;
      expect(dns).toMatch(/^example\.com: TypeError: /);
      expect(internet).toMatch(new RegExp(`^1\\.1\\.1\\.1: .*${target.noRoute.source}`));
      expect(host).toMatch(new RegExp(`^docker0: .*${target.noRoute.source}`));
    });

    test('the code volume and the root filesystem are read-only; /tmp is writable', async () => {
      const report = await run(spec('write.ts', { command: target.unrestricted }), {
        event: eventFor({}),
      });
      const value = (onlyResult(report) as { value: Record<string, string> }).value;
      // The files are root's and the mounts read-only (see the inspect test): either refuses.
      for (const path of ['/code/new.txt', '/code/main.ts', '/runner/runner.ts', '/etc/passwd']) {
        expect(value[path]).toMatch(/^(EACCES|EROFS): /);
      }
      expect(value['/tmp/scratch.txt']).toBe('written');
    });

    test('runs as uid 1000 without capabilities, under the sandbox runtime and the container rules', async () => {
      const report = await run(spec('whoami.ts', { command: target.unrestricted }), {
        event: eventFor({}),
      });
      const value = (onlyResult(report) as { value: Record<string, unknown> }).value;
      expect(value).toMatchObject({ uid: 1000, gid: 1000, cwd: '/code' });
      expect(value.capEff).toMatch(/^0+$/);
      // The runtime's environment and nothing of the host's.
      const imageEnv: Record<string, string> = Object.fromEntries(
        runtime
          .env({ mainModule: 'main.ts', allowNet: [], dependencies: false })
          .map((entry) => [
            entry.slice(0, entry.indexOf('=')),
            entry.slice(entry.indexOf('=') + 1),
          ]),
      );
      expect(value.env).toEqual({ ...imageEnv, HOSTNAME: 'sandbox', ...target.ownEnv });

      // Inspect a live one for the container rules.
      const loop = spec('loop.ts', { limits: { memoryBytes: 200 * MiB, pidsLimit: 300 } });
      let inspected:
        Awaited<ReturnType<ReturnType<typeof sandbox.docker.getContainer>['inspect']>> | undefined;
      await run(loop, {
        event: eventFor({}),
        afterEvent: (control) => {
          void (async () => {
            const [container] = await sandbox.driver.listContainers({
              executionId: loop.labels.executionId,
            });
            inspected = await sandbox.docker.getContainer(container!.id).inspect();
            await control.kill();
          })();
        },
      });
      const host = inspected!.HostConfig;
      expect(host.Runtime).toBe(sandbox.engineRuntime);
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
      expect(inspected!.Config.Image).toBe(runtime.image);
      expect(inspected!.Mounts).toEqual([
        expect.objectContaining({
          Type: 'volume',
          Name: sandbox.volume,
          Destination: '/code',
          RW: false,
        }),
      ]);
      expect(inspected!.Config.Labels).toMatchObject({
        'dev.assist-tee.managed': 'true',
        'dev.assist-tee.owner': 'test',
        'dev.assist-tee.instance-id': sandbox.instanceId,
        'dev.assist-tee.environment-id': sandbox.environmentId,
        'dev.assist-tee.execution-id': loop.labels.executionId,
      });
    });
  });
}

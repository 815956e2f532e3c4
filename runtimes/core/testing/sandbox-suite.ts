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
  expectOomKilled,
  handlerRun,
  logMessages,
  onlyResult,
  runSandbox,
  snippetRun,
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
        runs: [handlerRun({ n: 21 }, { GREETING: 'hello' }, { timeoutMs: 5_000 })],
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
      expect(report.marks).toEqual([{ type: 'flushed', run: 1 }]);
    });

    test('console output and tampering with globals cannot forge, break or read the frames', async () => {
      const report = await run(spec('noise.ts'), { runs: [handlerRun({ n: 1 })] });
      expect(onlyResult(report)).toEqual({
        type: 'result',
        run: 1,
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
      // The runner's own mark is the only line with the nonce.
      expect(report.marks).toEqual([{ type: 'flushed', run: 1 }]);
      expect(report.exit.exitCode).toBe(0);
    });

    test('a handler that throws gives ok:false with its message and stack', async () => {
      const [error, nonError] = await Promise.all([
        run(spec('throws.ts'), { runs: [handlerRun({})] }),
        run(spec('throws-string.ts'), { runs: [handlerRun({})] }),
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
        run(spec('init-fails.ts'), { runs: [handlerRun({})] }),
        run(spec('no-handler.ts'), { runs: [handlerRun({})] }),
        run(spec('missing-package.ts'), { runs: [handlerRun({})] }),
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

    test('a line that is not a run message fails the protocol phase and ends the sandbox', async () => {
      const [notJson, badKind, repeated] = await Promise.all([
        run(spec('main.ts'), { runs: ['{"data": oops', handlerRun({ n: 1 })] }),
        run(spec('main.ts'), {
          runs: ['{"type":"run","id":7,"kind":"nope","env":{},"context":{}}'],
        }),
        run(spec('main.ts'), {
          runs: [handlerRun({ n: 1 }, {}, { id: 2 }), handlerRun({ n: 1 }, {}, { id: 2 })],
        }),
      ]);
      expect(onlyResult(notJson)).toMatchObject({
        run: 0,
        ok: false,
        phase: 'protocol',
        error: { name: 'SyntaxError' },
      });
      expect(logMessages(notJson)).toEqual(['main module loaded']);
      expect(notJson.exit.exitCode).toBe(1);
      expect(onlyResult(badKind)).toMatchObject({
        run: 7,
        ok: false,
        phase: 'protocol',
        error: { name: 'ProtocolError', message: 'kind is neither "handler" nor "snippet"' },
      });
      expect(badKind.exit.exitCode).toBe(1);
      // Run ids only increase: a snippet's module is named by its run.
      expect(repeated.results).toMatchObject([
        { run: 2, ok: true },
        { run: 2, ok: false, phase: 'protocol', error: { message: 'run 2 does not follow run 2' } },
      ]);
      expect(repeated.exit.exitCode).toBe(1);
    });

    test('results that are not JSON, undefined, uncaught errors and leftover timers', async () => {
      const [bigint, undef, rejection, uncaught, timers] = await Promise.all([
        run(spec('bigint.ts'), { runs: [handlerRun({})] }),
        run(spec('undefined.ts'), { runs: [handlerRun({})] }),
        run(spec('rejection.ts'), { runs: [handlerRun({})] }),
        run(spec('uncaught.ts'), { runs: [handlerRun({})] }),
        run(spec('timers.ts'), { runs: [handlerRun({})] }),
      ]);
      expect(onlyResult(bigint)).toMatchObject({
        ok: false,
        phase: 'handler',
        error: { name: 'ResultSerializationError' },
      });
      expect(onlyResult(undef)).toEqual({ type: 'result', run: 1, ok: true, value: null });
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
      expect(onlyResult(timers)).toEqual({ type: 'result', run: 1, ok: true, value: 'done' });
      expect(timers.exit.exitCode).toBe(0);
      expect(timers.timings.exited - timers.timings.result!).toBeLessThan(15_000);
    });

    test('an endless loop is stopped by kill(), and `exited` resolves', async () => {
      let killedAt = 0;
      const report = await run(spec('loop.ts'), {
        runs: [handlerRun({})],
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
        runs: [handlerRun({})],
        afterEvent: (control) => void control.remove().then(() => control.remove()),
      });
      expect(report.results).toEqual([]);
      expect(report.exit.exitCode).toBe(137);
    });

    test('a container killed from outside the driver exits 137 and is not taken for an OOM', async () => {
      const loop = spec('loop.ts');
      const report = await run(loop, {
        runs: [handlerRun({})],
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
        runs: [handlerRun({})],
      });
      expectOomKilled(report);
    });

    test('there is no route out, even with the runtime allowing the network', async () => {
      const report = await run(
        spec('fetch.ts', {
          allowNet: ['example.com', '1.1.1.1', '172.17.0.1'],
          command: target.unrestricted,
        }),
        { runs: [handlerRun({})] },
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
        runs: [handlerRun({})],
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
        runs: [handlerRun({})],
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
        runs: [handlerRun({})],
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

    test('runs in one sandbox share module scope, globalThis and /tmp', async () => {
      const report = await run(spec('session.ts'), {
        runs: [1, 2, 3].map((id) => handlerRun({ id }, {}, { id })),
      });
      expect(report.results.map((result) => result.run)).toEqual([1, 2, 3]);
      expect(report.results.map((result) => (result.ok ? result.value : result))).toEqual([
        { count: 1, before: null, file: null, secret: null, sessionId: 'session-test' },
        { count: 2, before: 'run 1', file: 'run 1', secret: null, sessionId: 'session-test' },
        { count: 3, before: 'run 2', file: 'run 2', secret: null, sessionId: 'session-test' },
      ]);
      expect(report.exit).toEqual({ exitCode: 0, oomKilled: false });
    });

    test("a run's env is set for that run only", async () => {
      const report = await run(spec('session.ts'), {
        runs: [
          handlerRun({ id: 1 }, { SECRET: 'one' }, { id: 1 }),
          handlerRun({ id: 2 }, {}, { id: 2 }),
          handlerRun({ id: 3 }, { SECRET: 'three' }, { id: 3 }),
        ],
      });
      expect(report.results.map((result) => (result.ok ? result.value : result))).toMatchObject([
        { secret: 'one' },
        { secret: null },
        { secret: 'three' },
      ]);
    });

    test('a handler that throws fails its run only: the sandbox serves the next one', async () => {
      const report = await run(spec('session.ts'), {
        runs: [
          handlerRun({ id: 1, fail: true }, {}, { id: 1 }),
          handlerRun({ id: 2 }, {}, { id: 2 }),
        ],
      });
      expect(report.results).toMatchObject([
        { run: 1, ok: false, phase: 'handler', error: { name: 'Error', message: 'asked to fail' } },
        { run: 2, ok: true, value: { count: 2, before: null } },
      ]);
      expect(report.exit.exitCode).toBe(0);
    });

    test('a snippet imports modules next to the main module; its default export is the result', async () => {
      // The main module is in a directory: relative imports resolve against it, not /tmp.
      const first = `import { double } from '../utils.ts';
import { WHERE } from './entry.ts';
(globalThis as any).stored = { doubled: double(21) };
export default Promise.resolve({ doubled: double(21), where: WHERE });
`;
      const report = await run(spec('nested/entry.ts'), {
        runs: [
          snippetRun(first, ['../utils.ts', './entry.ts'], { id: 1 }),
          snippetRun('export default (globalThis as any).stored;\n', [], { id: 2 }),
          snippetRun("console.log('no default');\n", [], { id: 3 }),
        ],
      });
      expect(report.results).toEqual([
        { type: 'result', run: 1, ok: true, value: { doubled: 42, where: 'nested' } },
        { type: 'result', run: 2, ok: true, value: { doubled: 42 } },
        { type: 'result', run: 3, ok: true, value: null },
      ]);
      expect(logMessages(report)).toEqual(['no default']);
      expect(report.stderr).toBe('');
    });

    test('a snippet that does not compile, or imports what is not installed, fails its run only', async () => {
      const report = await run(spec('session.ts'), {
        runs: [
          snippetRun('export default 1 +;\n', [], { id: 1 }),
          snippetRun(
            `import pad from '${target.dialect.missingPackage}';\nexport default pad;\n`,
            [target.dialect.missingPackage],
            { id: 2 },
          ),
          snippetRun("export default 'still here';\n", [], { id: 3 }),
        ],
      });
      expect(report.results).toMatchObject([
        { run: 1, ok: false, phase: 'handler', error: { message: expect.any(String) as unknown } },
        {
          run: 2,
          ok: false,
          phase: 'handler',
          error: { message: expect.stringMatching(target.missingPackageError) as unknown },
        },
        { run: 3, ok: true, value: 'still here' },
      ]);
      expect((report.results[0] as { error: { message: string } }).error.message).not.toBe('');
    });

    test('an uncaught error fails the run in progress; its late result is dropped', async () => {
      const report = await run(spec('late.ts'), {
        // Run 1's handler resolves 500 ms in, while run 2 is in progress.
        runs: [
          handlerRun({ floating: true, waitMs: 500 }, {}, { id: 1 }),
          handlerRun({ waitMs: 1_000 }, {}, { id: 2 }),
        ],
      });
      expect(report.results).toHaveLength(2);
      expect(report.results).toMatchObject([
        {
          run: 1,
          ok: false,
          phase: 'handler',
          error: { name: 'RangeError', message: 'floating rejection' },
        },
        { type: 'result', run: 2, ok: true, value: 'served' },
      ]);
      expect(report.exit.exitCode).toBe(0);
    });

    test('an error a run leaves behind is logged between runs; the next run works', async () => {
      const report = await run(spec('late.ts'), {
        runs: [handlerRun({ late: true }, {}, { id: 1 }), handlerRun({}, {}, { id: 2 })],
        pauseMs: 1_000,
      });
      const shown = report.frames.map((frame) =>
        frame.type === 'log'
          ? `${frame.level}: ${frame.message}`
          : frame.type === 'result'
            ? `result ${frame.run}`
            : frame.type,
      );
      expect(shown).toEqual([
        'ready',
        'result 1',
        'error: Uncaught (between calls): RangeError: late rejection',
        'error: Uncaught (between calls): TypeError: late throw',
        'result 2',
      ]);
      expect(report.results).toMatchObject([
        { ok: true, value: 'served' },
        { ok: true, value: 'served' },
      ]);
      expect(report.exit.exitCode).toBe(0);
    });
  });
}

import { PassThrough } from 'node:stream';
import { createLogger } from '@assist-tee/logger';
import type { RunMessage, RunnerFrame } from '@assist-tee/runtime-core';
import type { Sandbox, SandboxDriver, SandboxExit } from '@assist-tee/sandbox';
import { describe, expect, it } from 'vitest';
import { type RunRequest, RunnerSandbox, type SandboxObserver } from '../src/runner-sandbox.js';

/**
 * A container that speaks the runner protocol as the test says: it records what the host
 * writes to stdin, and the test writes the runner's frames and output.
 */
class FakeContainer implements Sandbox {
  readonly id = 'fake-container-0123456789';
  readonly stdin = new PassThrough();
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly exited: Promise<SandboxExit>;
  killed = false;
  removed = false;
  private exitWith!: (exit: SandboxExit) => void;
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;

  constructor() {
    this.exited = new Promise((resolve) => (this.exitWith = resolve));
    let pending = '';
    this.stdin.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const parts = pending.split('\n');
      pending = parts.pop()!;
      this.lines.push(...parts);
      this.waiter?.();
    });
  }

  get nonce(): string {
    return this.lines[0]!;
  }

  /** The n-th run message the host sent (from 1). */
  async runMessage(n: number): Promise<RunMessage> {
    while (this.lines.length <= n) await new Promise<void>((resolve) => (this.waiter = resolve));
    return JSON.parse(this.lines[n]!) as RunMessage;
  }

  /** Writes a frame as the runner does: a result is followed by its mark on stderr. */
  frame(frame: RunnerFrame): void {
    this.write(this.stdout, frame);
    if (frame.type === 'result') this.write(this.stderr, { type: 'flushed', run: frame.run });
  }

  write(stream: PassThrough, frame: RunnerFrame): void {
    stream.write(`${this.nonce} ${JSON.stringify(frame)}\n`);
  }

  exit(exit: SandboxExit): void {
    this.stdout.end();
    this.stderr.end();
    this.exitWith(exit);
  }

  kill(): Promise<void> {
    this.killed = true;
    this.exit({ exitCode: 137, oomKilled: false });
    return Promise.resolve();
  }

  remove(): Promise<void> {
    this.removed = true;
    return this.kill();
  }
}

const logger = createLogger({ level: 'silent' });

async function launch(
  options: {
    startupTimeoutMs?: number;
    maxIdleOutputBytes?: number;
    observer?: SandboxObserver;
  } = {},
) {
  const container = new FakeContainer();
  const driver = { start: () => Promise.resolve(container) } as unknown as SandboxDriver;
  const sandbox = await RunnerSandbox.launch({
    driver,
    spec: { labels: { owner: 'execution', instanceId: 'i1', environmentId: 'env1' } } as never,
    startupTimeoutMs: options.startupTimeoutMs ?? 5_000,
    maxIdleOutputBytes: options.maxIdleOutputBytes ?? 1_000,
    logger,
    observer: options.observer,
  });
  return { container, sandbox };
}

const request = (data: unknown, more: Partial<RunRequest> = {}): RunRequest => ({
  work: { kind: 'handler', data },
  env: {},
  context: { executionId: 'e1', environmentId: 'env1', sessionId: 's1' },
  timeoutMs: 5_000,
  maxOutputBytes: 1_000,
  ...more,
});

describe('RunnerSandbox', () => {
  it('tells its observer how long its start, each run and its removal took', async () => {
    const seen: string[] = [];
    const observer: SandboxObserver = {
      started: (seconds, ok) => seen.push(`started ${ok} ${seconds >= 0}`),
      ran: (seconds) => seen.push(`ran ${seconds >= 0}`),
      removed: (seconds, ok) => seen.push(`removed ${ok} ${seconds >= 0}`),
    };
    const { container, sandbox } = await launch({ observer });
    // A run asked for while the sandbox starts: its time counts from the runner's ready.
    const run = sandbox.run(request({ n: 1 }));
    container.frame({ type: 'ready' });
    await container.runMessage(1);
    container.frame({ type: 'result', run: 1, ok: true, value: 1 });
    expect((await run).status).toBe('SUCCEEDED');
    await sandbox.remove();
    expect(seen).toEqual(['started true true', 'ran true', 'removed true true']);
  });

  it('tells its observer of a start that failed', async () => {
    const seen: boolean[] = [];
    const observer: SandboxObserver = {
      started: (_, ok) => seen.push(ok),
      ran: () => undefined,
      removed: () => undefined,
    };
    const { sandbox } = await launch({ observer, startupTimeoutMs: 10 });
    expect(await sandbox.ready).toBe(false);
    expect(seen).toEqual([false]);
  });

  it('goes starting → ready → running → idle → running → idle, one run at a time', async () => {
    const { container, sandbox } = await launch();
    expect(sandbox.state).toBe('starting');
    container.frame({ type: 'log', level: 'info', message: 'loading', time: 1 });
    container.frame({ type: 'ready' });
    expect(await sandbox.ready).toBe(true);
    expect(sandbox.state).toBe('ready');
    expect(sandbox.unused).toBe(true);

    const first = sandbox.run(request({ n: 1 }));
    expect(sandbox.state).toBe('running');
    await expect(sandbox.run(request({ n: 9 }))).rejects.toThrow(/already running/);
    const message = await container.runMessage(1);
    expect(message).toMatchObject({ type: 'run', id: 1, kind: 'handler', data: { n: 1 } });
    expect(message.context).toEqual({
      executionId: 'e1',
      environmentId: 'env1',
      sessionId: 's1',
      timeoutMs: 5_000,
    });
    container.frame({ type: 'log', level: 'warn', message: 'careful', time: 2 });
    container.frame({ type: 'result', run: 1, ok: true, value: 1 });
    const outcome = await first;
    expect(outcome).toMatchObject({
      status: 'SUCCEEDED',
      result: 1,
      sandboxEnded: false,
      exitCode: 0,
    });
    // The loading log belongs to the first run.
    expect(outcome.logs.map((line) => line.message)).toEqual(['loading', 'careful']);
    expect(sandbox.state).toBe('idle');
    expect(sandbox.unused).toBe(false);

    const second = sandbox.run(request({ n: 2 }));
    expect(await container.runMessage(2)).toMatchObject({ id: 2, data: { n: 2 } });
    container.frame({
      type: 'result',
      run: 2,
      ok: false,
      phase: 'handler',
      error: { name: 'TypeError', message: 'bad', stack: 's' },
    });
    expect(await second).toMatchObject({
      status: 'HANDLER_ERROR',
      error: { name: 'TypeError', message: 'bad' },
      sandboxEnded: false,
    });
    expect(sandbox.state).toBe('idle');
    expect(container.killed).toBe(false);
  });

  it("waits for the mark on stderr: what the run wrote there before it is the run's", async () => {
    const { container, sandbox } = await launch();
    container.frame({ type: 'ready' });
    let settled = false;
    const run = sandbox.run(request(null)).finally(() => (settled = true));
    await container.runMessage(1);
    container.write(container.stdout, { type: 'result', run: 1, ok: true, value: 1 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(settled).toBe(false);
    // A partial line glues itself in front of the mark.
    container.stderr.write('late line\npartial');
    container.write(container.stderr, { type: 'flushed', run: 1 });
    const outcome = await run;
    expect(outcome.status).toBe('SUCCEEDED');
    expect(outcome.logs.map((line) => [line.level, line.message])).toEqual([
      ['ERROR', 'late line'],
      ['ERROR', 'partial'],
    ]);
  });

  it('sends a run made while starting once the runner is ready', async () => {
    const { container, sandbox } = await launch();
    const run = sandbox.run(request('cold'));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sandbox.state).toBe('starting');
    container.frame({ type: 'ready' });
    expect(await container.runMessage(1)).toMatchObject({ id: 1, data: 'cold' });
    container.frame({ type: 'result', run: 1, ok: true, value: null });
    expect((await run).status).toBe('SUCCEEDED');
  });

  it('sends a snippet with its imports', async () => {
    const { container, sandbox } = await launch();
    container.frame({ type: 'ready' });
    const imports = [{ start: 20, end: 28, specifier: './lib.ts' }];
    const run = sandbox.run({
      ...request(null),
      work: { kind: 'snippet', code: 'export default 1', imports },
    });
    expect(await container.runMessage(1)).toMatchObject({
      kind: 'snippet',
      code: 'export default 1',
      imports,
    });
    container.frame({ type: 'result', run: 1, ok: true, value: 1 });
    expect((await run).result).toBe(1);
  });

  it('ignores a result for another run', async () => {
    const { container, sandbox } = await launch();
    container.frame({ type: 'ready' });
    const run = sandbox.run(request(null, { timeoutMs: 100 }));
    await container.runMessage(1);
    container.frame({ type: 'result', run: 7, ok: true, value: 'forged' });
    const outcome = await run;
    expect(outcome.status).toBe('TIMEOUT');
    expect(outcome.sandboxEnded).toBe(true);
  });

  it('ends on a timeout: the container is killed and the run says so', async () => {
    const { container, sandbox } = await launch();
    container.frame({ type: 'ready' });
    const outcome = await sandbox.run(request(null, { timeoutMs: 50 }));
    expect(container.killed).toBe(true);
    expect(outcome).toMatchObject({ status: 'TIMEOUT', exitCode: 137, sandboxEnded: true });
    expect(sandbox.state).toBe('ended');
    await expect(sandbox.run(request(null))).rejects.toThrow(/ended/);
  });

  it('ends when a run writes past its output cap, keeping the first bytes', async () => {
    const { container, sandbox } = await launch();
    container.frame({ type: 'ready' });
    // The ready frame's 50 bytes count too: every byte the sandbox writes does.
    const run = sandbox.run(request(null, { maxOutputBytes: 150 }));
    await container.runMessage(1);
    container.stderr.write('x'.repeat(60) + '\n');
    await new Promise((resolve) => setImmediate(resolve));
    container.stderr.write('y'.repeat(60) + '\n');
    const outcome = await run;
    expect(outcome).toMatchObject({
      status: 'OUTPUT_LIMIT',
      outputTruncated: true,
      sandboxEnded: true,
    });
    expect(outcome.logs.map((line) => line.message)).toEqual(['x'.repeat(60)]);
  });

  it('ends when the runtime exits in a run, and reports the exit', async () => {
    const { container, sandbox } = await launch();
    container.frame({ type: 'ready' });
    const run = sandbox.run(request(null));
    await container.runMessage(1);
    container.exit({ exitCode: 3, oomKilled: false });
    expect(await run).toMatchObject({
      status: 'HANDLER_ERROR',
      error: { name: 'ProcessExited' },
      exitCode: 3,
      sandboxEnded: true,
    });
    await sandbox.ended;
    expect(sandbox.state).toBe('ended');
  });

  it('stops the sandbox when output between runs passes the idle cap', async () => {
    const { container, sandbox } = await launch({ maxIdleOutputBytes: 50 });
    container.frame({ type: 'ready' });
    const run = sandbox.run(request(null));
    await container.runMessage(1);
    container.frame({ type: 'result', run: 1, ok: true, value: 1 });
    await run;
    container.stderr.write('z'.repeat(80) + '\n');
    await sandbox.ended;
    expect(container.killed).toBe(true);
    expect(sandbox.stopReason).toBe('output');
  });

  it('times out a main module that does not load', async () => {
    const { container, sandbox } = await launch({ startupTimeoutMs: 50 });
    expect(await sandbox.ready).toBe(false);
    expect(container.killed).toBe(true);
    expect(sandbox.state).toBe('ended');
  });

  it('aborts a run from outside: SANDBOX_ERROR named after the reason', async () => {
    const { container, sandbox } = await launch();
    container.frame({ type: 'ready' });
    const controller = new AbortController();
    const run = sandbox.run(request(null, { signal: controller.signal }));
    await container.runMessage(1);
    const reason = new Error('the session ended');
    reason.name = 'SessionEnded';
    controller.abort(reason);
    expect(await run).toMatchObject({
      status: 'SANDBOX_ERROR',
      error: { name: 'SessionEnded', message: 'the session ended' },
      sandboxEnded: true,
    });
  });
});

import { randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';
import type { Logger } from '@assist-tee/logger';
import { activeContext, type Context, failSpan, inSpan, tracer } from '@assist-tee/tracing';
import {
  encodeRun,
  type RunContext,
  type RunMessage,
  type RunnerFrame,
  type SnippetImport,
} from '@assist-tee/runtime-core';
import type { Sandbox, SandboxDriver, SandboxExit, SandboxSpec } from '@assist-tee/sandbox';
import { type Classified, classifyRun, type RunResult, type StopReason } from './run-outcome.js';
import {
  type LogLevel,
  type LogLine,
  LineSplitter,
  logLineOf,
  splitFrameLine,
} from './runner-protocol.js';

export type { RunStatus } from './run-outcome.js';

/**
 * Where a sandbox is in its life:
 * - starting: the container runs and the runner is loading the main module;
 * - ready: loaded, and no run has been sent yet (a warm pool hands out only these);
 * - running: one run is in progress (a sandbox runs one at a time);
 * - idle: a run has ended with its result and the sandbox takes the next (a session's);
 * - ended: the container exited or was stopped; it takes nothing more.
 */
export type SandboxState = 'starting' | 'ready' | 'running' | 'idle' | 'ended';

export interface LaunchOptions {
  driver: SandboxDriver;
  spec: SandboxSpec;
  startupTimeoutMs: number;
  /** Output the sandbox may write outside any run (while it loads, between runs). */
  maxIdleOutputBytes: number;
  logger: Logger;
  /** Called once the container is removed (e.g. to end the sandbox's egress grant). */
  onRemoved?: () => void;
  /** Told how long the start, each run and the removal took (the metrics). */
  observer?: SandboxObserver;
}

/** Durations, in seconds, of a sandbox's start (launch to ready), runs and removal. */
export interface SandboxObserver {
  started(seconds: number, ok: boolean): void;
  ran(seconds: number): void;
  removed(seconds: number, ok: boolean): void;
}

/** What a run does: call the handler on `data`, or evaluate a snippet. */
export type RunWork =
  { kind: 'handler'; data: unknown } | { kind: 'snippet'; code: string; imports: SnippetImport[] };

export interface RunRequest {
  work: RunWork;
  env: Record<string, string>;
  context: Omit<RunContext, 'timeoutMs'>;
  timeoutMs: number;
  maxOutputBytes: number;
  /** Called with each log line as it arrives (ExecuteStream), starting with earlier ones. */
  onLog?: (line: LogLine) => void;
  /** Aborting stops the sandbox; the outcome is SANDBOX_ERROR named after the abort reason. */
  signal?: AbortSignal;
}

export interface RunOutcome extends Classified {
  logs: LogLine[];
  outputTruncated: boolean;
  /** The container's exit code; 0 while it lives on after the run. */
  exitCode: number;
  /** The sandbox ended with this run: it takes no more. */
  sandboxEnded: boolean;
}

// After the container exits, its output streams end once Docker has flushed them.
const STREAM_DRAIN_MS = 2_000;

interface ActiveRun {
  id: number;
  request: RunRequest;
  logs: LogLine[];
  outputBytes: number;
  truncated: boolean;
  /** When the run went to the runner (performance.now()); undefined until then. */
  sentAt?: number;
  result?: RunResult;
  /** The runner's stderr mark after the result: the run's stderr is all in. */
  flushed: boolean;
  /** Resolves once both the result and the mark are in. */
  resultIn: PromiseWithResolvers<void>;
  /** The container's exit, once its output is drained, if it exits during the run. */
  exited: PromiseWithResolvers<SandboxExit>;
  timer?: NodeJS.Timeout;
}

/**
 * One sandbox through the runner protocol (@assist-tee/runtime-core's runner-protocol), as an
 * explicit state machine that serves one run (a fresh execution) or many, one at a time (a
 * session). launch() starts the container and sends the nonce; `ready` resolves once the runner
 * has loaded the main module. A run sent while it starts waits for ready. Deadlines and output
 * caps are enforced from outside by killing the container, which ends the sandbox.
 */
export class RunnerSandbox {
  /** True once the runner is ready for a run; false if the sandbox ended first. */
  readonly ready: Promise<boolean>;
  /**
   * Resolves when the container has exited, or its output was cut (a kill or removal from
   * outside ends the attach stream before the engine reports the exit).
   */
  readonly ended: Promise<void>;
  private current: ActiveRun | undefined;
  private stateNow: SandboxState = 'starting';
  private loaded = false;
  private gone = false;
  private nextRunId = 1;
  private stopped: StopReason | undefined;
  /** Output that arrived outside any run: the next run gets it (a fresh run, its loading logs). */
  private unclaimed: LogLine[] = [];
  private unclaimedBytes = 0;
  private startupTimer: NodeJS.Timeout | undefined;
  private removal: Promise<void> | undefined;
  private resolveReady!: (ready: boolean) => void;
  private readonly nonce = randomBytes(16).toString('hex');
  private readonly exit: Promise<SandboxExit>;
  private readonly log: Logger;
  private readonly stdoutLines: LineSplitter;
  private readonly stderrLines: LineSplitter;
  /** What its spans say about it, worked out once: a session's sandbox runs many times. */
  private readonly spanAttributes: Record<string, string>;

  private constructor(
    private readonly sandbox: Sandbox,
    private readonly options: LaunchOptions,
  ) {
    this.log = options.logger.child({ containerId: sandbox.id.slice(0, 12) });
    this.spanAttributes = spanAttributes(options.spec);
    this.ready = new Promise((resolve) => (this.resolveReady = resolve));
    this.stdoutLines = new LineSplitter((line) => this.onLine(line, 'INFO'));
    this.stderrLines = new LineSplitter((line) => this.onLine(line, 'ERROR'));
    sandbox.stdout.on(
      'data',
      (chunk: Buffer) => this.account(chunk) && this.stdoutLines.push(chunk),
    );
    sandbox.stderr.on(
      'data',
      (chunk: Buffer) => this.account(chunk) && this.stderrLines.push(chunk),
    );
    this.exit = sandbox.exited.then((exit) => {
      this.gone = true;
      this.stateNow = 'ended';
      clearTimeout(this.startupTimer);
      clearTimeout(this.current?.timer);
      this.resolveReady(false);
      return exit;
    });
    // The run going on when the container exits ends with that exit, once the output is in.
    void this.exit.then(async (exit) => {
      await drain([sandbox.stdout, sandbox.stderr]);
      this.current?.exited.resolve(exit);
    });
    const outputCut = new Promise((resolve) => sandbox.stdout.once('end', resolve));
    this.ended = Promise.race([this.exit, outputCut]).then(() => {
      this.gone = true;
      this.stateNow = 'ended';
    });
    this.startupTimer = setTimeout(() => this.stop('startup'), options.startupTimeoutMs);
    sandbox.stdin.write(`${this.nonce}\n`);
  }

  /**
   * Starts the container; one that cannot be started counts as removed. The start (its span
   * and its duration) lasts until the runner is ready, or the sandbox ends first.
   */
  static async launch(options: LaunchOptions): Promise<RunnerSandbox> {
    const startedAt = performance.now();
    const span = tracer().startSpan('sandbox.start', { attributes: spanAttributes(options.spec) });
    const started = (ok: boolean, error?: unknown) => {
      options.observer?.started(secondsSince(startedAt), ok);
      if (!ok) failSpan(span, error ?? new Error('the sandbox ended before it was ready'));
      span.end();
    };
    try {
      const sandbox = new RunnerSandbox(await options.driver.start(options.spec), options);
      void sandbox.ready.then((ready) => started(ready));
      return sandbox;
    } catch (error) {
      started(false, error);
      options.onRemoved?.();
      throw error;
    }
  }

  get id(): string {
    return this.sandbox.id;
  }

  get state(): SandboxState {
    return this.stateNow;
  }

  /** Loaded and never used: a warm pool hands out only these. */
  get unused(): boolean {
    return this.stateNow === 'ready';
  }

  /** Why the sandbox was stopped from outside, if it was. */
  get stopReason(): StopReason | undefined {
    return this.stopped;
  }

  /**
   * Runs once the runner is ready (at once if it is) and resolves with the outcome when the
   * result is in or the sandbox has ended. The sandbox is not removed: call remove() when done
   * with it (the caller need not wait for that).
   */
  async run(request: RunRequest): Promise<RunOutcome> {
    if (this.current !== undefined || this.stateNow === 'running') {
      throw new Error('the sandbox is already running a call');
    }
    if (this.stateNow === 'ended') throw new Error('the sandbox has ended');
    return this.runNow(request, activeContext());
  }

  /**
   * The run's span and duration: from the moment it went to the runner (a run sent while the
   * sandbox starts waits for it, and that wait is the start's) to its outcome.
   */
  private recordRun(parent: Context, sentAt: number, outcome: RunOutcome | undefined): void {
    const span = tracer().startSpan(
      'sandbox.run',
      { attributes: this.spanAttributes, startTime: performance.timeOrigin + sentAt },
      parent,
    );
    if (outcome === undefined) failSpan(span, new Error('the run failed'));
    else span.setAttribute('assist_tee.execution.status', outcome.status);
    span.end();
    this.options.observer?.ran(secondsSince(sentAt));
  }

  private async runNow(request: RunRequest, parent: Context): Promise<RunOutcome> {
    const calledAt = performance.now();
    const run: ActiveRun = {
      id: this.nextRunId++,
      request,
      logs: this.unclaimed,
      outputBytes: this.unclaimedBytes,
      truncated: false,
      flushed: false,
      resultIn: Promise.withResolvers<void>(),
      exited: Promise.withResolvers<SandboxExit>(),
    };
    this.unclaimed = [];
    this.unclaimedBytes = 0;
    this.current = run;
    for (const line of run.logs) request.onLog?.(line);
    if (run.outputBytes > request.maxOutputBytes) this.truncate(run);
    const onAbort = () => this.stop('aborted');
    if (request.signal?.aborted) onAbort();
    request.signal?.addEventListener('abort', onAbort, { once: true });
    if (this.loaded) this.send(run);
    let outcome: RunOutcome | undefined;
    try {
      outcome = await this.outcome(run);
      return outcome;
    } finally {
      clearTimeout(run.timer);
      request.signal?.removeEventListener('abort', onAbort);
      this.current = undefined;
      this.recordRun(parent, run.sentAt ?? calledAt, outcome);
    }
  }

  /** Kills and removes the container; idempotent, never rejects (a failure is logged). */
  remove(): Promise<void> {
    clearTimeout(this.startupTimer);
    clearTimeout(this.current?.timer);
    const startedAt = performance.now();
    const removed = (ok: boolean) => this.options.observer?.removed(secondsSince(startedAt), ok);
    this.removal ??= inSpan('sandbox.remove', {}, () => this.sandbox.remove())
      .then(
        () => removed(true),
        (error: unknown) => {
          removed(false);
          this.log.error({ err: error }, 'remove failed');
        },
      )
      .finally(() => this.options.onRemoved?.());
    return this.removal;
  }

  /**
   * The run's outcome: at its result (and the stderr mark after it) the sandbox lives on; a
   * sandbox that exits or is stopped from outside first is waited for, so that its exit explains
   * the outcome.
   */
  private async outcome(run: ActiveRun): Promise<RunOutcome> {
    const exited = run.exited.promise;
    const settled = run.resultIn.promise.then(() => undefined);
    let exit = await Promise.race([exited, settled]);
    if (this.stopped !== undefined) exit = await exited;
    clearTimeout(run.timer);
    if (!run.truncated) {
      this.stdoutLines.end();
      this.stderrLines.end();
    }
    const classified = classifyRun({
      exit,
      stopReason: this.stopped,
      ready: this.loaded,
      result: run.result,
      logs: run.logs,
      timeoutMs: run.request.timeoutMs,
      maxOutputBytes: run.request.maxOutputBytes,
      startupTimeoutMs: this.options.startupTimeoutMs,
      abortReason: run.request.signal?.reason,
    });
    this.log.debug({ exit, stopReason: this.stopped, status: classified.status }, 'run ended');
    const sandboxEnded = exit !== undefined || this.gone;
    this.stateNow = sandboxEnded ? 'ended' : 'idle';
    return {
      ...classified,
      logs: run.logs,
      outputTruncated: run.truncated,
      exitCode: exit?.exitCode ?? 0,
      sandboxEnded,
    };
  }

  private send(run: ActiveRun): void {
    if (run.sentAt !== undefined) return;
    run.sentAt = performance.now();
    this.stateNow = 'running';
    const { request } = run;
    const context = { ...request.context, timeoutMs: request.timeoutMs };
    const message: RunMessage =
      request.work.kind === 'handler'
        ? {
            type: 'run',
            id: run.id,
            kind: 'handler',
            data: request.work.data,
            env: request.env,
            context,
          }
        : {
            type: 'run',
            id: run.id,
            kind: 'snippet',
            code: request.work.code,
            imports: request.work.imports,
            env: request.env,
            context,
          };
    this.sandbox.stdin.write(encodeRun(message));
    run.timer = setTimeout(() => this.stop('timeout'), request.timeoutMs);
  }

  /** A line of output: the user's own (stdout INFO, stderr ERROR) or a frame of the runner's. */
  private onLine(line: string, level: 'INFO' | 'ERROR'): void {
    const { output, frame } = splitFrameLine(line, this.nonce);
    if (output !== '' || frame === undefined) this.addLog(level, output);
    if (frame !== undefined) this.onFrame(frame);
  }

  private settleIfIn(run: ActiveRun): void {
    if (run.sentAt !== undefined && run.result !== undefined && run.flushed) {
      run.resultIn.resolve();
    }
  }

  private onFrame(frame: RunnerFrame): void {
    if (frame.type === 'log') {
      const line = logLineOf(frame);
      this.addLog(line.level, line.message, line.time);
    } else if (frame.type === 'ready' && !this.loaded) {
      this.loaded = true;
      clearTimeout(this.startupTimer);
      if (this.stateNow === 'starting') this.stateNow = 'ready';
      this.resolveReady(true);
      if (this.current !== undefined) this.send(this.current);
    } else if (frame.type === 'result') {
      // The current run's outcome, or a failed import (run 0) in place of ready; a result for
      // another run cannot come from the runner, which serves one run at a time.
      const run = this.current;
      if (run === undefined || run.result !== undefined) return;
      if (frame.run !== run.id && frame.run !== 0) return;
      run.result = frame.ok ? { ok: true, value: frame.value } : { ok: false, error: frame.error };
      this.settleIfIn(run);
    } else if (frame.type === 'flushed') {
      const run = this.current;
      if (run === undefined || frame.run !== run.id) return;
      run.flushed = true;
      this.settleIfIn(run);
    }
  }

  private addLog(level: LogLevel, message: string, time = Date.now()): void {
    const line = { level, message, time };
    const run = this.current;
    if (run === undefined) {
      this.unclaimed.push(line);
      return;
    }
    run.logs.push(line);
    run.request.onLog?.(line);
  }

  /** Output past the cap is dropped and stops the sandbox; the first bytes are kept. */
  private account(chunk: Buffer): boolean {
    const run = this.current;
    if (run === undefined) {
      this.unclaimedBytes += chunk.length;
      if (this.unclaimedBytes <= this.options.maxIdleOutputBytes) return true;
      this.stop('output');
      return false;
    }
    if (run.truncated) return false;
    run.outputBytes += chunk.length;
    if (run.outputBytes <= run.request.maxOutputBytes) return true;
    this.truncate(run);
    return false;
  }

  private truncate(run: ActiveRun): void {
    run.truncated = true;
    this.stop('output');
  }

  private stop(reason: StopReason): void {
    this.stopped ??= reason;
    clearTimeout(this.startupTimer);
    clearTimeout(this.current?.timer);
    this.sandbox.kill().catch((error: unknown) => this.log.warn({ err: error }, 'kill failed'));
  }
}

function secondsSince(startedAt: number): number {
  return (performance.now() - startedAt) / 1000;
}

/** What a trace shows of a sandbox: its environment, and its execution or session. */
function spanAttributes(spec: SandboxSpec): Record<string, string> {
  const names = {
    environmentId: 'assist_tee.environment.id',
    executionId: 'assist_tee.execution.id',
    sessionId: 'assist_tee.session.id',
    pool: 'assist_tee.sandbox.pool',
  } as const;
  const attributes: Record<string, string> = {};
  for (const [label, name] of Object.entries(names)) {
    const value = spec.labels[label as keyof typeof names];
    if (value !== undefined) attributes[name] = value;
  }
  return attributes;
}

async function drain(streams: NodeJS.ReadableStream[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(streams.map((stream) => finished(stream))),
    new Promise((resolve) => (timer = setTimeout(resolve, STREAM_DRAIN_MS))),
  ]);
  clearTimeout(timer);
}

import { randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';
import type { ExecutionStatusName } from '@assist-tee/db';
import type { Logger } from '@assist-tee/logger';
import type { Sandbox, SandboxDriver, SandboxExit, SandboxSpec } from '@assist-tee/sandbox';
import {
  type HandlerError,
  LineSplitter,
  type LogLevel,
  type LogLine,
  splitFrameLine,
} from './runner-protocol.js';

/** How a run ended: every execution status but RUNNING. */
export type RunStatus = Exclude<ExecutionStatusName, 'RUNNING'>;

export interface HandlerEvent {
  data: unknown;
  env: Record<string, string>;
  context: { executionId: string; environmentId: string; timeoutMs: number };
}

export interface LaunchOptions {
  driver: SandboxDriver;
  spec: SandboxSpec;
  startupTimeoutMs: number;
  /** Output the main module may write while it loads, before a run sets the execution's cap. */
  maxInitOutputBytes: number;
  logger: Logger;
  /** Called once the container is removed (e.g. to end the sandbox's egress grant). */
  onRemoved?: () => void;
}

export interface RunRequest {
  event: HandlerEvent;
  timeoutMs: number;
  maxOutputBytes: number;
  /** Called with each log line as it arrives (ExecuteStream), starting with the loading ones. */
  onLog?: (line: LogLine) => void;
  /** Aborting stops the sandbox; the outcome is SANDBOX_ERROR named after the abort reason. */
  signal?: AbortSignal;
}

export interface RunOutcome {
  status: RunStatus;
  result: unknown;
  error: HandlerError | null;
  logs: LogLine[];
  outputTruncated: boolean;
  exitCode: number;
}

// After the container exits, its output streams end once Docker has flushed them.
const STREAM_DRAIN_MS = 2_000;
const RESULT_SETTLE_MS = 1;
const CLEAN_EXIT: SandboxExit = { exitCode: 0, oomKilled: false };
const V8_FATAL_EXIT_CODE = 133;
const PID_LIMIT_EXIT_CODE = 2;
const V8_OOM_MESSAGE = /JavaScript (heap )?out of memory/;

/** Why the sandbox was stopped from outside. */
type StopReason = 'startup' | 'timeout' | 'output' | 'aborted';

type Result = { ok: true; value: unknown } | { ok: false; error: HandlerError };

/**
 * One sandbox through the runner protocol, used for exactly one run. launch() starts the
 * container and sends the nonce; the runner imports the main module and says ready, and
 * `ready` resolves. A warm pool launches ahead of demand and hands out only ready sandboxes;
 * a cold run calls run() at once, and the event is sent when ready comes. Deadlines and the
 * output cap are enforced from outside by killing the container.
 */
export class HandlerSandbox {
  /** True once the runner is ready for its event; false if the sandbox ended first. */
  readonly ready: Promise<boolean>;
  /**
   * Resolves when the container has exited, or its output was cut (a kill or removal from
   * outside ends the attach stream before the engine reports the exit).
   */
  readonly ended: Promise<void>;
  private readonly nonce = randomBytes(16).toString('hex');
  private readonly logs: LogLine[] = [];
  private readonly log: Logger;
  private readonly exit: Promise<SandboxExit>;
  private result: Result | undefined;
  private stopReason: StopReason | undefined;
  private outputBytes = 0;
  private outputTruncated = false;
  private maxOutputBytes: number;
  private timer: NodeJS.Timeout | undefined;
  private request: RunRequest | undefined;
  private eventSent = false;
  private isReady = false;
  private gone = false;
  private resolveReady!: (ready: boolean) => void;
  private readonly stdoutLines: LineSplitter;
  private readonly stderrLines: LineSplitter;
  private readonly startupTimeoutMs: number;
  private readonly onRemoved: (() => void) | undefined;
  private removal: Promise<void> | undefined;
  /** Resolves when the handler's result frame arrives. */
  private readonly resultIn: Promise<void>;
  private resolveResultIn!: () => void;
  /** The outcome is taken: later output belongs to no one. */
  private answered = false;

  private constructor(
    private readonly sandbox: Sandbox,
    options: LaunchOptions,
  ) {
    this.log = options.logger.child({ containerId: sandbox.id.slice(0, 12) });
    this.maxOutputBytes = options.maxInitOutputBytes;
    this.startupTimeoutMs = options.startupTimeoutMs;
    this.onRemoved = options.onRemoved;
    this.ready = new Promise((resolve) => (this.resolveReady = resolve));
    this.resultIn = new Promise((resolve) => (this.resolveResultIn = resolve));
    this.stdoutLines = new LineSplitter((line) => this.onStdoutLine(line));
    this.stderrLines = new LineSplitter((line) => this.addLog('ERROR', line));
    sandbox.stdout.on(
      'data',
      (chunk: Buffer) => this.account(chunk) && this.stdoutLines.push(chunk),
    );
    sandbox.stderr.on(
      'data',
      (chunk: Buffer) => this.account(chunk) && this.stderrLines.push(chunk),
    );
    this.exit = sandbox.exited.then((exit) => {
      clearTimeout(this.timer);
      this.resolveReady(false);
      return exit;
    });
    const outputCut = new Promise((resolve) => sandbox.stdout.once('end', resolve));
    this.ended = Promise.race([this.exit, outputCut]).then(() => {
      this.gone = true;
    });
    this.timer = setTimeout(() => this.stop('startup'), options.startupTimeoutMs);
    sandbox.stdin.write(`${this.nonce}\n`);
  }

  /** Starts the container; one that cannot be started counts as removed. */
  static async launch(options: LaunchOptions): Promise<HandlerSandbox> {
    try {
      return new HandlerSandbox(await options.driver.start(options.spec), options);
    } catch (error) {
      options.onRemoved?.();
      throw error;
    }
  }

  get id(): string {
    return this.sandbox.id;
  }

  /** Ready and still running: nothing has used it, and it can take an event now. */
  get idle(): boolean {
    return this.isReady && !this.gone && this.request === undefined;
  }

  /**
   * Runs one event and resolves with the outcome once its result is in or the sandbox has
   * exited. The sandbox is not removed: call remove() once the outcome is recorded (the caller
   * need not wait for it).
   */
  async run(request: RunRequest): Promise<RunOutcome> {
    if (this.request !== undefined) throw new Error('a sandbox runs one event only');
    this.request = request;
    for (const line of this.logs) request.onLog?.(line);
    this.maxOutputBytes = request.maxOutputBytes;
    if (this.outputBytes > this.maxOutputBytes) this.truncate();
    const onAbort = () => this.stop('aborted');
    if (request.signal?.aborted) onAbort();
    request.signal?.addEventListener('abort', onAbort, { once: true });
    if (this.isReady) this.sendEvent();
    try {
      const exit = await this.outcomeExit();
      clearTimeout(this.timer);
      this.answered = true;
      if (!this.outputTruncated) {
        this.stdoutLines.end();
        this.stderrLines.end();
      }
      const ready = this.isReady;
      this.log.debug({ exit, stopReason: this.stopReason, ready }, 'sandbox exited');
      return {
        ...classify({
          exit,
          stopReason: this.stopReason,
          ready,
          result: this.result,
          logs: this.logs,
          request,
          startupTimeoutMs: this.startupTimeoutMs,
        }),
        logs: this.logs,
        outputTruncated: this.outputTruncated,
        exitCode: exit.exitCode,
      };
    } finally {
      clearTimeout(this.timer);
      request.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * The exit, or a clean one once the result is in: after its result the runner only waits to
   * be removed, and then exits with code 0. Output on stderr may trail the result frame on
   * stdout by a hair: it gets RESULT_SETTLE_MS. A sandbox stopped from outside is waited for,
   * so its exit explains the outcome.
   */
  private async outcomeExit(): Promise<SandboxExit> {
    const exited = this.exit.then(async (exit) => {
      await drain([this.sandbox.stdout, this.sandbox.stderr]);
      return exit;
    });
    const settled = this.resultIn.then(async () => {
      await new Promise((resolve) => setTimeout(resolve, RESULT_SETTLE_MS));
      return CLEAN_EXIT;
    });
    const first = await Promise.race([exited, settled]);
    return this.stopReason === undefined ? first : exited;
  }

  /** Kills and removes the container; idempotent, never rejects (a failure is logged). */
  remove(): Promise<void> {
    clearTimeout(this.timer);
    this.removal ??= this.sandbox
      .remove()
      .catch((error: unknown) => this.log.error({ err: error }, 'remove failed'))
      .finally(() => this.onRemoved?.());
    return this.removal;
  }

  private onStdoutLine(line: string): void {
    const { output, frame } = splitFrameLine(line, this.nonce);
    if (output !== '' || frame === undefined) this.addLog('INFO', output);
    if (frame === undefined) return;
    if (frame.type === 'log') {
      this.addLog(frame.line.level, frame.line.message, frame.line.time);
    } else if (frame.type === 'ready' && !this.isReady) {
      this.isReady = true;
      clearTimeout(this.timer);
      this.resolveReady(true);
      if (this.request !== undefined) this.sendEvent();
    } else if (frame.type === 'result' && this.result === undefined) {
      // The handler's outcome, or a failed import in place of ready.
      this.result = frame.ok ? { ok: true, value: frame.value } : { ok: false, error: frame.error };
      if (this.eventSent) this.resolveResultIn();
    }
  }

  private sendEvent(): void {
    if (this.eventSent || this.request === undefined) return;
    this.eventSent = true;
    this.sandbox.stdin.write(`${JSON.stringify(this.request.event)}\n`);
    this.timer = setTimeout(() => this.stop('timeout'), this.request.timeoutMs);
  }

  private addLog(level: LogLevel, message: string, time = Date.now()): void {
    if (this.answered) return;
    const line = { level, message, time };
    this.logs.push(line);
    this.request?.onLog?.(line);
  }

  /** Output past the cap is dropped and stops the sandbox; the first bytes are kept. */
  private account(chunk: Buffer): boolean {
    if (this.outputTruncated) return false;
    this.outputBytes += chunk.length;
    if (this.outputBytes <= this.maxOutputBytes) return true;
    this.truncate();
    return false;
  }

  private truncate(): void {
    this.outputTruncated = true;
    this.stop('output');
  }

  private stop(reason: StopReason): void {
    this.stopReason ??= reason;
    clearTimeout(this.timer);
    this.sandbox.kill().catch((error: unknown) => this.log.warn({ err: error }, 'kill failed'));
  }
}

async function drain(streams: NodeJS.ReadableStream[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(streams.map((stream) => finished(stream))),
    new Promise((resolve) => (timer = setTimeout(resolve, STREAM_DRAIN_MS))),
  ]);
  clearTimeout(timer);
}

function classify(state: {
  exit: SandboxExit;
  stopReason: StopReason | undefined;
  ready: boolean;
  result: Result | undefined;
  logs: LogLine[];
  request: RunRequest;
  startupTimeoutMs: number;
}): Pick<RunOutcome, 'status' | 'result' | 'error'> {
  const { exit, stopReason, ready, result, logs, request, startupTimeoutMs } = state;
  const failure = (status: RunStatus, name: string, message: string) => ({
    status,
    result: null,
    error: { name, message, stack: '' },
  });
  if (stopReason === 'output') {
    return failure(
      'OUTPUT_LIMIT',
      'OutputLimitExceeded',
      `output exceeded ${request.maxOutputBytes} bytes; the sandbox was stopped`,
    );
  }
  if (result?.ok) return { status: 'SUCCEEDED', result: result.value, error: null };
  if (result) return { status: 'HANDLER_ERROR', result: null, error: result.error };
  if (stopReason === 'aborted') {
    const reason = request.signal?.reason as Error;
    return failure('SANDBOX_ERROR', reason.name, reason.message);
  }
  // gVisor shows V8 the host's memory, so with a large memory_mb V8 can hit its own heap
  // limit before the cgroup does: it aborts (exit 133) saying so on stderr.
  const v8OutOfMemory =
    exit.exitCode === V8_FATAL_EXIT_CODE &&
    logs.some((line) => line.level === 'ERROR' && V8_OOM_MESSAGE.test(line.message));
  if (exit.oomKilled || v8OutOfMemory) {
    return failure('OOM', 'OutOfMemory', 'the sandbox ran out of memory (limits.memory_mb)');
  }
  if (stopReason === 'timeout') {
    return failure(
      'TIMEOUT',
      'Timeout',
      `the handler did not return within ${request.timeoutMs} ms`,
    );
  }
  if (stopReason === 'startup') {
    return failure(
      'TIMEOUT',
      'Timeout',
      `the main module did not finish loading within ${startupTimeoutMs} ms`,
    );
  }
  // Under runsc's ptrace platform, hitting the PID limit kills the whole sandbox with exit
  // code 2 and no last words (docs/host-facts.md); the runner itself never exits with 2 once
  // it has its nonce.
  if (exit.exitCode === PID_LIMIT_EXIT_CODE) {
    return failure(
      'PROCESS_LIMIT',
      'ProcessLimit',
      'the sandbox hit its process limit (too many processes or threads) and was stopped',
    );
  }
  if (ready) {
    return failure(
      'HANDLER_ERROR',
      'ProcessExited',
      `the sandbox process exited with code ${exit.exitCode} before the handler returned`,
    );
  }
  return failure(
    'SANDBOX_ERROR',
    'SandboxFailed',
    `the sandbox exited with code ${exit.exitCode} before it was ready`,
  );
}

import { randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';
import type { ExecutionStatusName } from '@assist-tee/db';
import type { Logger } from '@assist-tee/logger';
import type { SandboxDriver, SandboxExit, SandboxSpec } from '@assist-tee/sandbox';
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

export interface RunOptions {
  driver: SandboxDriver;
  spec: SandboxSpec;
  event: HandlerEvent;
  timeoutMs: number;
  startupTimeoutMs: number;
  maxOutputBytes: number;
  logger: Logger;
  /** Called with each log line as it arrives (ExecuteStream). */
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
const EXIT_AFTER_RESULT_MS = 1_000;
const V8_FATAL_EXIT_CODE = 133;
const PID_LIMIT_EXIT_CODE = 2;
const V8_OOM_MESSAGE = /JavaScript (heap )?out of memory/;

/** Why the sandbox was stopped from outside. */
type StopReason = 'startup' | 'timeout' | 'output' | 'aborted';

/**
 * Runs one event through a fresh sandbox: sends the nonce, waits for the runner's ready frame,
 * sends the event, and collects logs and the result. Deadlines and the output cap are enforced
 * from outside by killing the container. The container is always removed.
 */
export async function runHandler(options: RunOptions): Promise<RunOutcome> {
  const { driver, event, logger } = options;
  const sandbox = await driver.start(options.spec);
  const log = logger.child({ containerId: sandbox.id.slice(0, 12) });
  const nonce = randomBytes(16).toString('hex');
  const logs: LogLine[] = [];
  let result: { ok: true; value: unknown } | { ok: false; error: HandlerError } | undefined;
  let ready = false;
  let stopReason: StopReason | undefined;
  let outputBytes = 0;
  let outputTruncated = false;
  let timer: NodeJS.Timeout | undefined;

  const stop = (reason: StopReason) => {
    stopReason ??= reason;
    clearTimeout(timer);
    sandbox.kill().catch((error: unknown) => log.warn({ err: error }, 'kill failed'));
  };
  const addLog = (level: LogLevel, message: string, time = Date.now()) => {
    const line = { level, message, time };
    logs.push(line);
    options.onLog?.(line);
  };
  // Output past the cap is dropped and stops the sandbox; the first bytes are kept.
  const account = (chunk: Buffer): boolean => {
    if (outputTruncated) return false;
    outputBytes += chunk.length;
    if (outputBytes <= options.maxOutputBytes) return true;
    outputTruncated = true;
    stop('output');
    return false;
  };

  const stdout = new LineSplitter((line) => {
    const { output, frame } = splitFrameLine(line, nonce);
    if (output !== '' || frame === undefined) addLog('INFO', output);
    if (frame === undefined) return;
    if (frame.type === 'log') {
      addLog(frame.line.level, frame.line.message, frame.line.time);
    } else if (frame.type === 'ready' && !ready) {
      ready = true;
      clearTimeout(timer);
      sandbox.stdin.write(`${JSON.stringify(event)}\n`);
      timer = setTimeout(() => stop('timeout'), options.timeoutMs);
    } else if (frame.type === 'result' && result === undefined) {
      result = frame.ok ? { ok: true, value: frame.value } : { ok: false, error: frame.error };
      // The runner exits right after its result; one that lingers is stopped.
      clearTimeout(timer);
      timer = setTimeout(() => {
        sandbox.kill().catch((error: unknown) => log.warn({ err: error }, 'kill failed'));
      }, EXIT_AFTER_RESULT_MS);
    }
  });
  const stderr = new LineSplitter((line) => addLog('ERROR', line));
  const onAbort = () => stop('aborted');
  sandbox.stdout.on('data', (chunk: Buffer) => account(chunk) && stdout.push(chunk));
  sandbox.stderr.on('data', (chunk: Buffer) => account(chunk) && stderr.push(chunk));

  try {
    timer = setTimeout(() => stop('startup'), options.startupTimeoutMs);
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    sandbox.stdin.write(`${nonce}\n`);
    const exit = await sandbox.exited;
    clearTimeout(timer);
    await drain([sandbox.stdout, sandbox.stderr]);
    if (!outputTruncated) {
      stdout.end();
      stderr.end();
    }
    log.debug({ exit, stopReason, ready }, 'sandbox exited');
    return {
      ...classify({ exit, stopReason, ready, result, logs, options }),
      logs,
      outputTruncated,
      exitCode: exit.exitCode,
    };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    await sandbox.remove().catch((error: unknown) => log.error({ err: error }, 'remove failed'));
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
  result: { ok: true; value: unknown } | { ok: false; error: HandlerError } | undefined;
  logs: LogLine[];
  options: RunOptions;
}): Pick<RunOutcome, 'status' | 'result' | 'error'> {
  const { exit, stopReason, ready, result, logs, options } = state;
  const failure = (status: RunStatus, name: string, message: string) => ({
    status,
    result: null,
    error: { name, message, stack: '' },
  });
  if (stopReason === 'output') {
    return failure(
      'OUTPUT_LIMIT',
      'OutputLimitExceeded',
      `output exceeded ${options.maxOutputBytes} bytes; the sandbox was stopped`,
    );
  }
  if (result?.ok) return { status: 'SUCCEEDED', result: result.value, error: null };
  if (result) return { status: 'HANDLER_ERROR', result: null, error: result.error };
  if (stopReason === 'aborted') {
    const reason = options.signal?.reason as Error;
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
      `the handler did not return within ${options.timeoutMs} ms`,
    );
  }
  if (stopReason === 'startup') {
    return failure(
      'TIMEOUT',
      'Timeout',
      `the main module did not finish loading within ${options.startupTimeoutMs} ms`,
    );
  }
  // Under runsc's ptrace platform, hitting the PID limit kills the whole sandbox with exit
  // code 2 and no last words (DESIGN §4); the runner itself never exits with 2 once it has
  // its nonce.
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

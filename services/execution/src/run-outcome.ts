import type { ExecutionStatusName } from '@assist-tee/db';
import type { SandboxExit } from '@assist-tee/sandbox';
import type { HandlerError, LogLine } from './runner-protocol.js';

/** How a run ended: every execution status but RUNNING. */
export type RunStatus = Exclude<ExecutionStatusName, 'RUNNING'>;

/** Why a sandbox was stopped from outside. */
export type StopReason = 'startup' | 'timeout' | 'output' | 'aborted';

/** The runner's result frame for the run. */
export type RunResult = { ok: true; value: unknown } | { ok: false; error: HandlerError };

/** What is known when a run ends. */
export interface RunEnd {
  /** The container's exit; undefined when the run ended with its result and the sandbox lives on. */
  exit: SandboxExit | undefined;
  stopReason: StopReason | undefined;
  /** The runner had loaded the main module. */
  ready: boolean;
  result: RunResult | undefined;
  logs: readonly LogLine[];
  timeoutMs: number;
  maxOutputBytes: number;
  startupTimeoutMs: number;
  /** Why the run was aborted, when stopReason is 'aborted'. */
  abortReason?: unknown;
}

export type Classified = { status: RunStatus; result: unknown; error: HandlerError | null };

const V8_FATAL_EXIT_CODE = 133;
const PID_LIMIT_EXIT_CODE = 2;
const V8_OOM_MESSAGE = /JavaScript (heap )?out of memory/;

/** A run's status, result and error, from how it ended. */
export function classifyRun(end: RunEnd): Classified {
  const { exit, stopReason, ready, result, logs } = end;
  const failure = (status: RunStatus, name: string, message: string): Classified => ({
    status,
    result: null,
    error: { name, message, stack: '' },
  });
  if (stopReason === 'output') {
    return failure(
      'OUTPUT_LIMIT',
      'OutputLimitExceeded',
      `output exceeded ${end.maxOutputBytes} bytes; the sandbox was stopped`,
    );
  }
  if (result?.ok) return { status: 'SUCCEEDED', result: result.value, error: null };
  if (result) return { status: 'HANDLER_ERROR', result: null, error: result.error };
  if (stopReason === 'aborted') {
    const reason = end.abortReason as Error;
    return failure('SANDBOX_ERROR', reason.name, reason.message);
  }
  const exitCode = exit?.exitCode ?? -1;
  // gVisor shows V8 the host's memory, so with a large memory_mb V8 can hit its own heap
  // limit before the cgroup does: it aborts (exit 133) saying so on stderr.
  const v8OutOfMemory =
    exitCode === V8_FATAL_EXIT_CODE &&
    logs.some((line) => line.level === 'ERROR' && V8_OOM_MESSAGE.test(line.message));
  if (exit?.oomKilled || v8OutOfMemory) {
    return failure('OOM', 'OutOfMemory', 'the sandbox ran out of memory (limits.memory_mb)');
  }
  if (stopReason === 'timeout') {
    return failure('TIMEOUT', 'Timeout', `the handler did not return within ${end.timeoutMs} ms`);
  }
  if (stopReason === 'startup') {
    return failure(
      'TIMEOUT',
      'Timeout',
      `the main module did not finish loading within ${end.startupTimeoutMs} ms`,
    );
  }
  // Under runsc's ptrace platform, hitting the PID limit kills the whole sandbox with exit
  // code 2 and no last words (docs/host-facts.md); the runner itself never exits with 2 once
  // it has its nonce.
  if (exitCode === PID_LIMIT_EXIT_CODE) {
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
      `the sandbox process exited with code ${exitCode} before the handler returned`,
    );
  }
  return failure(
    'SANDBOX_ERROR',
    'SandboxFailed',
    `the sandbox exited with code ${exitCode} before it was ready`,
  );
}

import { describe, expect, it } from 'vitest';
import { classifyRun, type RunEnd } from '../src/run-outcome.js';

const end = (more: Partial<RunEnd>): RunEnd => ({
  exit: { exitCode: 0, oomKilled: false },
  stopReason: undefined,
  ready: true,
  result: undefined,
  logs: [],
  timeoutMs: 1_000,
  maxOutputBytes: 500,
  startupTimeoutMs: 2_000,
  ...more,
});

const killed = { exitCode: 137, oomKilled: false };

describe('classifyRun', () => {
  it('takes the result frame when there is one', () => {
    expect(classifyRun(end({ exit: undefined, result: { ok: true, value: 3 } }))).toEqual({
      status: 'SUCCEEDED',
      result: 3,
      error: null,
    });
    const error = { name: 'TypeError', message: 'x', stack: '' };
    expect(classifyRun(end({ result: { ok: false, error } }))).toEqual({
      status: 'HANDLER_ERROR',
      result: null,
      error,
    });
  });

  it('puts the output cap before everything, even a result', () => {
    expect(
      classifyRun(end({ stopReason: 'output', exit: killed, result: { ok: true, value: 1 } })),
    ).toMatchObject({ status: 'OUTPUT_LIMIT', error: { name: 'OutputLimitExceeded' } });
  });

  it('names each way a sandbox is stopped or dies', () => {
    const cases: [Partial<RunEnd>, string, string][] = [
      [{ stopReason: 'timeout', exit: killed }, 'TIMEOUT', 'Timeout'],
      [{ stopReason: 'startup', exit: killed, ready: false }, 'TIMEOUT', 'Timeout'],
      [{ exit: { exitCode: 137, oomKilled: true } }, 'OOM', 'OutOfMemory'],
      [
        {
          exit: { exitCode: 133, oomKilled: false },
          logs: [{ level: 'ERROR', message: 'FATAL: JavaScript heap out of memory', time: 0 }],
        },
        'OOM',
        'OutOfMemory',
      ],
      [{ exit: { exitCode: 2, oomKilled: false } }, 'PROCESS_LIMIT', 'ProcessLimit'],
      [{ exit: { exitCode: 1, oomKilled: false } }, 'HANDLER_ERROR', 'ProcessExited'],
      [{ exit: { exitCode: 1, oomKilled: false }, ready: false }, 'SANDBOX_ERROR', 'SandboxFailed'],
    ];
    for (const [input, status, name] of cases) {
      expect(classifyRun(end(input)), JSON.stringify(input)).toMatchObject({
        status,
        error: { name },
      });
    }
  });

  it('names an abort after its reason', () => {
    const reason = Object.assign(new Error('the service stopped'), { name: 'ServiceStopping' });
    expect(classifyRun(end({ stopReason: 'aborted', exit: killed, abortReason: reason }))).toEqual({
      status: 'SANDBOX_ERROR',
      result: null,
      error: { name: 'ServiceStopping', message: 'the service stopped', stack: '' },
    });
  });
});

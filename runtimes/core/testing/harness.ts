import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';
import { expect } from 'vitest';
import type { SandboxDriver, SandboxExit, SandboxSpec } from '@assist-tee/sandbox';

export type Frame =
  | { type: 'ready' }
  | { type: 'log'; level: string; message: string; time: number }
  | { type: 'result'; ok: true; value: unknown }
  | {
      type: 'result';
      ok: false;
      phase: string;
      error: { name: string; message: string; stack: string };
    };

export interface RunOptions {
  /** The event line sent after the ready frame; omitted means none is sent. */
  event?: unknown;
  /** Sent as the event line verbatim instead of `event` (protocol tests). */
  eventLine?: string;
  /** Called once the event is written (or at ready when there is none). */
  afterEvent?: (control: { kill(): Promise<void>; remove(): Promise<void> }) => void;
}

export interface RunReport {
  containerId: string;
  nonce: string;
  frames: Frame[];
  results: Extract<Frame, { type: 'result' }>[];
  /** stdout lines without the nonce. */
  raw: string[];
  stderr: string;
  exit: SandboxExit;
  /** Milliseconds from before start() to the ready frame, the result frame and the exit. */
  timings: { started: number; ready?: number; result?: number; exited: number };
}

/** Runs one sandbox through the runner protocol, the way the execution service does, and removes it. */
export async function runSandbox(
  driver: SandboxDriver,
  spec: SandboxSpec,
  options: RunOptions = {},
): Promise<RunReport> {
  const begin = performance.now();
  const since = () => Math.round(performance.now() - begin);
  const sandbox = await driver.start(spec);
  const timings: Partial<RunReport['timings']> = { started: since() };
  const nonce = randomBytes(16).toString('hex');
  const frames: Frame[] = [];
  const raw: string[] = [];
  let stderr = '';
  const control = { kill: () => sandbox.kill(), remove: () => sandbox.remove() };
  try {
    sandbox.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const lines = createInterface({ input: sandbox.stdout, crlfDelay: Infinity });
    lines.on('line', (line) => {
      if (!line.startsWith(`${nonce} `)) {
        raw.push(line);
        return;
      }
      const frame = JSON.parse(line.slice(nonce.length + 1)) as Frame;
      frames.push(frame);
      if (frame.type === 'ready') {
        timings.ready = since();
        if (options.eventLine !== undefined) sandbox.stdin.write(`${options.eventLine}\n`);
        else if (options.event !== undefined) {
          sandbox.stdin.write(`${JSON.stringify(options.event)}\n`);
        }
        options.afterEvent?.(control);
      } else if (frame.type === 'result') {
        timings.result ??= since();
        // The runner exits once its stdin closes after the result.
        sandbox.stdin.end();
      }
    });
    sandbox.stdin.write(`${nonce}\n`);
    const exit = await sandbox.exited;
    timings.exited = since();
    await Promise.allSettled([finished(sandbox.stdout), finished(sandbox.stderr)]);
    return {
      containerId: sandbox.id,
      nonce,
      frames,
      results: frames.filter((frame) => frame.type === 'result'),
      raw,
      stderr,
      exit,
      timings: timings as RunReport['timings'],
    };
  } finally {
    await sandbox.remove();
  }
}

/** The event line the execution service sends. */
export function eventFor(data: unknown, env: Record<string, string> = {}, timeoutMs = 10_000) {
  return {
    data,
    env,
    context: { executionId: 'exec-test', environmentId: 'env-test', timeoutMs },
  };
}

/** The log messages of a run, in order. */
export function logMessages(report: RunReport): string[] {
  return report.frames.flatMap((frame) => (frame.type === 'log' ? [frame.message] : []));
}

/** The one result frame of a run. */
export function onlyResult(report: RunReport) {
  expect(report.results, JSON.stringify(report)).toHaveLength(1);
  return report.results[0]!;
}

/**
 * A run the kernel OOM-killed: Docker reports the kill; the exit code is 137 when the kernel
 * picks the handler's process and 2 when it picks one of runsc's own (the sandbox dies whole).
 */
export function expectOomKilled(report: RunReport): void {
  expect(report.results).toEqual([]);
  expect(report.exit.oomKilled).toBe(true);
  expect([2, 137]).toContain(report.exit.exitCode);
}

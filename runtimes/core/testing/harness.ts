import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';
import { expect } from 'vitest';
import type { SandboxDriver, SandboxExit, SandboxSpec } from '@assist-tee/sandbox';
import {
  encodeRun,
  type HandlerRun,
  type RunMessage,
  type RunnerFrame,
  type SnippetRun,
} from '../src/runner-protocol.js';

/** The line a run sends: a RunMessage, or any text verbatim (protocol tests). */
export type RunLine = RunMessage | string;

export interface RunOptions {
  /** Sent one at a time: the first at the ready frame, each next one once the previous
   * result is in. Stdin closes after the last result. None: nothing is sent. */
  runs?: RunLine[];
  /** Milliseconds to wait after a result before sending the next run. */
  pauseMs?: number;
  /** Called once the first run is written (or at ready when there is none). */
  afterEvent?: (control: { kill(): Promise<void>; remove(): Promise<void> }) => void;
}

type ResultFrame = Extract<RunnerFrame, { type: 'result' }>;

export interface RunReport {
  containerId: string;
  nonce: string;
  frames: RunnerFrame[];
  results: ResultFrame[];
  /** stdout lines without the nonce. */
  raw: string[];
  /** stderr without the runner's marks. */
  stderr: string;
  /** The runner's marks on stderr, one after each result. */
  marks: RunnerFrame[];
  exit: SandboxExit;
  /** Milliseconds from before start() to the ready frame, the last result frame and the exit. */
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
  const frames: RunnerFrame[] = [];
  const raw: string[] = [];
  const pending = [...(options.runs ?? [])];
  let stderr = '';
  const control = { kill: () => sandbox.kill(), remove: () => sandbox.remove() };
  const sendNext = () => {
    const next = pending.shift();
    if (next === undefined) {
      // The runner exits once its stdin closes.
      sandbox.stdin.end();
      return;
    }
    sandbox.stdin.write(typeof next === 'string' ? `${next}\n` : encodeRun(next));
  };
  try {
    // A runner that exited (a failed init, a protocol error) makes later writes fail: not ours to report.
    sandbox.stdin.on('error', () => {});
    sandbox.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const lines = createInterface({ input: sandbox.stdout, crlfDelay: Infinity });
    lines.on('line', (line) => {
      if (!line.startsWith(`${nonce} `)) {
        raw.push(line);
        return;
      }
      // Parsed as is, not decoded: the test sees what the runner wrote.
      const frame = JSON.parse(line.slice(nonce.length + 1)) as RunnerFrame;
      frames.push(frame);
      if (frame.type === 'ready') {
        timings.ready = since();
        if (pending.length > 0) sendNext();
        options.afterEvent?.(control);
      } else if (frame.type === 'result') {
        timings.result = since();
        if (!frame.ok && frame.phase !== 'handler') pending.length = 0;
        if (pending.length > 0 && options.pauseMs !== undefined) {
          setTimeout(sendNext, options.pauseMs);
        } else sendNext();
      }
    });
    sandbox.stdin.write(`${nonce}\n`);
    const exit = await sandbox.exited;
    timings.exited = since();
    await Promise.allSettled([finished(sandbox.stdout), finished(sandbox.stderr)]);
    const marks: RunnerFrame[] = [];
    stderr = stderr
      .split('\n')
      .filter((line) => {
        if (!line.startsWith(`${nonce} `)) return true;
        marks.push(JSON.parse(line.slice(nonce.length + 1)) as RunnerFrame);
        return false;
      })
      .join('\n');
    return {
      containerId: sandbox.id,
      nonce,
      frames,
      results: frames.filter((frame) => frame.type === 'result'),
      raw,
      stderr,
      marks,
      exit,
      timings: timings as RunReport['timings'],
    };
  } finally {
    await sandbox.remove();
  }
}

const testContext = (timeoutMs: number) => ({
  executionId: 'exec-test',
  environmentId: 'env-test',
  sessionId: 'session-test',
  timeoutMs,
});

/** A handler run as the execution service sends it. */
export function handlerRun(
  data: unknown,
  env: Record<string, string> = {},
  { id = 1, timeoutMs = 10_000 } = {},
): HandlerRun {
  return { type: 'run', id, kind: 'handler', data, env, context: testContext(timeoutMs) };
}

/** A snippet run; its imports are found the way the service's lexer finds them (each quoted
 * specifier listed, in order of appearance). */
export function snippetRun(
  code: string,
  specifiers: string[] = [],
  {
    id = 1,
    env = {},
    timeoutMs = 10_000,
  }: { id?: number; env?: Record<string, string>; timeoutMs?: number } = {},
): SnippetRun {
  let from = 0;
  const imports = specifiers.map((specifier) => {
    const quoted = code.indexOf(`'${specifier}'`, from);
    if (quoted === -1) throw new Error(`no import '${specifier}' in the snippet`);
    from = quoted + specifier.length + 2;
    return { start: quoted + 1, end: quoted + 1 + specifier.length, specifier };
  });
  return { type: 'run', id, kind: 'snippet', code, imports, env, context: testContext(timeoutMs) };
}

/** The log messages of a run, in order. */
export function logMessages(report: RunReport): string[] {
  return report.frames.flatMap((frame) => (frame.type === 'log' ? [frame.message] : []));
}

/** The one result frame of a sandbox. */
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

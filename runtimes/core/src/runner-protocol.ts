// The messages between the execution service (the host) and the runner in a sandbox
// (runner/core.ts), defined once. The runner imports the types only (its image holds no copy of
// this file); the host imports the types and the functions below.
//
// host → runner, on stdin, one line each:
//   1. the nonce: an opaque token that only the runner's closure and the host know
//   2. a RunMessage per run, as JSON; the runner serves runs one at a time, in order, until
//      stdin closes, and then exits
// runner → host, on stdout: `${nonce} ${JSON of a RunnerFrame}\n`
//   log frames for console calls (at any time), then `ready` once the main module is imported,
//   or a failed result with run 0 and phase "init" (and exit); then one result per run.
// runner → host, on stderr: after each result, the same line with a `flushed` frame naming the
//   run (on stdout if the run closed stderr). stdout and stderr reach the host through separate
//   pipes, so either may run ahead: once both the result and the mark are in, every byte the run
//   wrote to either is in too.
// Any line without the nonce is raw output of the user's code, on stdout or stderr.

/** What the handler sees as `context`. `sessionId` is empty outside a session. */
export interface RunContext {
  executionId: string;
  environmentId: string;
  sessionId: string;
  timeoutMs: number;
}

/** A static import in a snippet: `specifier` at code[start, end), as the host's lexer found it. */
export interface SnippetImport {
  start: number;
  end: number;
  specifier: string;
}

interface RunBase {
  type: 'run';
  /** Positive, increasing per sandbox; the result frame names it. */
  id: number;
  /** Set in the process environment for this run only; the previous run's names are unset. */
  env: Record<string, string>;
  context: RunContext;
}

/** Calls the main module's `handler({ data, env }, context)`. */
export interface HandlerRun extends RunBase {
  kind: 'handler';
  data: unknown;
}

/**
 * Evaluates `code` as a module that sits next to the main module (its relative imports resolve
 * there, bare ones to the environment's dependencies); what its default export resolves to is
 * the result.
 */
export interface SnippetRun extends RunBase {
  kind: 'snippet';
  code: string;
  imports: SnippetImport[];
}

export type RunMessage = HandlerRun | SnippetRun;

export type RunnerLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface RunnerError {
  name: string;
  message: string;
  stack: string;
}

/** Where a failure happened: loading the main module, the run itself, or a bad message. */
export type FailurePhase = 'init' | 'handler' | 'protocol';

export type RunnerFrame =
  | { type: 'ready' }
  | { type: 'log'; level: RunnerLogLevel; message: string; time: number }
  | { type: 'result'; run: number; ok: true; value: unknown }
  | { type: 'result'; run: number; ok: false; phase: FailurePhase; error: RunnerError }
  | { type: 'flushed'; run: number };

/** The line the host writes for a run. */
export function encodeRun(message: RunMessage): string {
  return `${JSON.stringify(message)}\n`;
}

const LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error'];
const PHASES: readonly string[] = ['init', 'handler', 'protocol'];

/**
 * A frame's JSON as the runner wrote it, checked field by field (missing text becomes empty, an
 * unknown level "info"); undefined for anything that is not a frame. User code cannot forge a
 * frame without the nonce, but the runner's own frames are still not trusted blindly.
 */
export function decodeFrame(json: string): RunnerFrame | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const frame = raw as Record<string, unknown>;
  switch (frame.type) {
    case 'ready':
      return { type: 'ready' };
    case 'log':
      return {
        type: 'log',
        level: (LEVELS.includes(String(frame.level)) ? frame.level : 'info') as RunnerLogLevel,
        message: text(frame.message),
        time: typeof frame.time === 'number' ? frame.time : Date.now(),
      };
    case 'flushed':
      return { type: 'flushed', run: runOf(frame) };
    case 'result': {
      const run = runOf(frame);
      if (frame.ok === true) return { type: 'result', run, ok: true, value: frame.value ?? null };
      return {
        type: 'result',
        run,
        ok: false,
        phase: (PHASES.includes(String(frame.phase)) ? frame.phase : 'handler') as FailurePhase,
        error: decodeError(frame.error),
      };
    }
    default:
      return undefined;
  }
}

function decodeError(value: unknown): RunnerError {
  const error = (typeof value === 'object' && value !== null ? value : {}) as Record<
    string,
    unknown
  >;
  return {
    name: text(error.name) || 'Error',
    message: text(error.message),
    stack: text(error.stack),
  };
}

const runOf = (frame: Record<string, unknown>) => (typeof frame.run === 'number' ? frame.run : 0);
const text = (field: unknown) => (typeof field === 'string' ? field : '');

// The service's side of the runner protocol (runtimes/core/runner/core.ts): the runner prefixes every
// frame it writes to stdout with a per-sandbox nonce that only it and the service know, so
// anything else on stdout or stderr is plain output of the handler, never a frame.

import { decodeLogBytes, escapeControls } from './log-text.js';

export type LogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

export interface LogLine {
  level: LogLevel;
  message: string;
  /** Epoch milliseconds. */
  time: number;
}

export interface HandlerError {
  name: string;
  message: string;
  stack: string;
}

export type Frame =
  | { type: 'ready' }
  | { type: 'log'; line: LogLine }
  | { type: 'result'; ok: true; value: unknown }
  | { type: 'result'; ok: false; phase: 'init' | 'handler'; error: HandlerError };

const LEVELS: Record<string, LogLevel> = {
  debug: 'DEBUG',
  info: 'INFO',
  log: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
};

/**
 * Splits a stdout line into plain output and the runner's frame. A handler that writes a
 * partial line (no newline) glues it in front of the next frame, so the frame is looked for
 * anywhere in the line; only the runner knows the nonce, so nothing else can match.
 */
export function splitFrameLine(line: string, nonce: string): { output: string; frame?: Frame } {
  const at = line.indexOf(`${nonce} `);
  if (at === -1) return { output: line };
  const frame = parseFrameJson(line.slice(at + nonce.length + 1));
  return frame === undefined ? { output: line } : { output: line.slice(0, at), frame };
}

function parseFrameJson(json: string): Frame | undefined {
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
        line: {
          level: LEVELS[String(frame.level)] ?? 'INFO',
          message: escapeControls(String(frame.message)),
          time: typeof frame.time === 'number' ? frame.time : Date.now(),
        },
      };
    case 'result':
      if (frame.ok === true) return { type: 'result', ok: true, value: frame.value ?? null };
      return {
        type: 'result',
        ok: false,
        phase: frame.phase === 'init' ? 'init' : 'handler',
        error: toHandlerError(frame.error),
      };
    default:
      return undefined;
  }
}

function toHandlerError(value: unknown): HandlerError {
  const error = (typeof value === 'object' && value !== null ? value : {}) as Record<
    string,
    unknown
  >;
  const text = (field: unknown) => (typeof field === 'string' ? field : '');
  return {
    name: text(error.name) || 'Error',
    message: text(error.message),
    stack: text(error.stack),
  };
}

/**
 * Splits a byte stream into lines. Bytes are decoded per complete line, so a multi-byte
 * character split across chunks survives; invalid UTF-8 and control characters come out as
 * `\xNN` (log-text.ts).
 */
export class LineSplitter {
  private pending: Buffer[] = [];

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (let end = chunk.indexOf(0x0a); end !== -1; end = chunk.indexOf(0x0a, start)) {
      this.pending.push(chunk.subarray(start, end));
      this.emit();
      start = end + 1;
    }
    if (start < chunk.length) this.pending.push(chunk.subarray(start));
  }

  /** Emits a last line that had no newline. */
  end(): void {
    if (this.pending.length > 0) this.emit();
  }

  private emit(): void {
    const line = decodeLogBytes(Buffer.concat(this.pending));
    this.pending = [];
    this.onLine(line);
  }
}

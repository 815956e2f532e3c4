// The host's reading of the runner's output. The frames themselves are defined once, in
// @assist-tee/runtime-core's runner-protocol: the runner prefixes every frame it writes to
// stdout with a per-sandbox nonce that only it and the host know, so anything else on stdout or
// stderr is plain output of the user's code, never a frame.

import { decodeFrame, type RunnerError, type RunnerFrame } from '@assist-tee/runtime-core';
import { decodeLogBytes, escapeControls } from './log-text.js';

export type LogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

export interface LogLine {
  level: LogLevel;
  message: string;
  /** Epoch milliseconds. */
  time: number;
}

export type HandlerError = RunnerError;

const LEVELS = { debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR' } as const;

/** A log frame as a log line: the level in the API's terms, control characters escaped. */
export function logLineOf(frame: Extract<RunnerFrame, { type: 'log' }>): LogLine {
  return { level: LEVELS[frame.level], message: escapeControls(frame.message), time: frame.time };
}

/**
 * Splits a stdout line into plain output and the runner's frame. A handler that writes a
 * partial line (no newline) glues it in front of the next frame, so the frame is looked for
 * anywhere in the line; only the runner knows the nonce, so nothing else can match.
 */
export function splitFrameLine(
  line: string,
  nonce: string,
): { output: string; frame?: RunnerFrame } {
  const at = line.indexOf(`${nonce} `);
  if (at === -1) return { output: line };
  const frame = decodeFrame(line.slice(at + nonce.length + 1));
  return frame === undefined ? { output: line } : { output: line.slice(0, at), frame };
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

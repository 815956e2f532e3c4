import { StringDecoder } from 'node:string_decoder';

/** A longer line is passed on in pieces of this many characters. */
export const MAX_LINE_CHARS = 4 * 1024;

/** Package managers colour their output; it is read as plain text. */
export function plainText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
}

/**
 * Cuts a byte stream into lines of plain text as it arrives: UTF-8 decoded across chunk
 * boundaries, split at "\n", "\r\n" or a lone "\r" (progress bars redraw with it), colour codes
 * removed, blank lines dropped. A line never waits for more than MAX_LINE_CHARS characters, so
 * output without newlines holds no more than that.
 */
export function lineSplitter(onLine: (line: string) => void): {
  write(chunk: Buffer): void;
  end(): void;
} {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  const emit = (line: string) => {
    const text = plainText(line).trimEnd();
    if (text.trim() !== '') onLine(text);
  };
  const take = (text: string) => {
    const lines = (partial + text).split(/\r\n|\n|\r/);
    partial = lines.pop()!;
    for (const line of lines) {
      for (let i = 0; i < line.length; i += MAX_LINE_CHARS) emit(line.slice(i, i + MAX_LINE_CHARS));
    }
    while (partial.length >= MAX_LINE_CHARS) {
      emit(partial.slice(0, MAX_LINE_CHARS));
      partial = partial.slice(MAX_LINE_CHARS);
    }
  };
  return {
    write: (chunk) => take(decoder.write(chunk)),
    end: () => {
      take(decoder.end());
      if (partial !== '') emit(partial);
      partial = '';
    },
  };
}

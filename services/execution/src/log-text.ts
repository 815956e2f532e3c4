import { isUtf8 } from 'node:buffer';

// Log text reaches terminals, JSON and protobuf strings: control characters (ANSI escapes,
// NUL, carriage returns) and bytes that are not UTF-8 are shown as `\xNN`, so a log line can
// neither drive the reader's terminal nor hide what the handler wrote. Tab and newline stay.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

const hex = (code: number) => `\\x${code.toString(16).padStart(2, '0')}`;

/** `text` with control characters other than tab and newline escaped as `\xNN`. */
export function escapeControls(text: string): string {
  return text.replace(CONTROL, (char) => hex(char.charCodeAt(0)));
}

/** Decodes output bytes: valid UTF-8 as text, every other byte as `\xNN`; then escapes controls. */
export function decodeLogBytes(bytes: Buffer): string {
  if (isUtf8(bytes)) return escapeControls(bytes.toString('utf8'));
  let text = '';
  let start = 0;
  let i = 0;
  while (i < bytes.length) {
    const length = utf8SequenceLength(bytes, i);
    if (length > 0) {
      i += length;
      continue;
    }
    text += bytes.toString('utf8', start, i) + hex(bytes[i]!);
    start = ++i;
  }
  return escapeControls(text + bytes.toString('utf8', start));
}

/** Length of the well-formed UTF-8 sequence at `i` (RFC 3629: no overlongs or surrogates), or 0. */
function utf8SequenceLength(bytes: Buffer, i: number): number {
  const first = bytes[i]!;
  if (first < 0x80) return 1;
  const length = first >= 0xc2 && first <= 0xdf ? 2 : first >= 0xe0 && first <= 0xef ? 3 : 4;
  if (first < 0xc2 || first > 0xf4 || i + length > bytes.length) return 0;
  const low = first === 0xe0 ? 0xa0 : first === 0xf0 ? 0x90 : 0x80;
  const high = first === 0xed ? 0x9f : first === 0xf4 ? 0x8f : 0xbf;
  const second = bytes[i + 1]!;
  if (second < low || second > high) return 0;
  for (let k = 2; k < length; k++) {
    const next = bytes[i + k]!;
    if (next < 0x80 || next > 0xbf) return 0;
  }
  return length;
}

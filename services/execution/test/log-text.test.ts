import { describe, expect, it } from 'vitest';
import { decodeLogBytes, escapeControls } from '../src/log-text.js';

describe('decodeLogBytes', () => {
  it('keeps valid UTF-8, tabs and newlines as they are', () => {
    expect(decodeLogBytes(Buffer.from('t€st\twith 😀\nnext', 'utf8'))).toBe('t€st\twith 😀\nnext');
  });

  it('shows every byte of a malformed sequence as \\xNN', () => {
    // A lone continuation byte, an overlong "/", a UTF-16 surrogate, a truncated 4-byte sequence.
    const bytes = Buffer.from([0x80, 0x41, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0x42, 0xf0, 0x9f, 0x98]);
    expect(decodeLogBytes(bytes)).toBe('\\x80A\\xc0\\xaf\\xed\\xa0\\x80B\\xf0\\x9f\\x98');
  });

  it('escapes ANSI escapes, NUL, CR, DEL and C1 controls', () => {
    expect(decodeLogBytes(Buffer.from('\x1b[31mred\x1b[0m\x00\r\x7f\u009b', 'utf8'))).toBe(
      '\\x1b[31mred\\x1b[0m\\x00\\x0d\\x7f\\x9b',
    );
    expect(escapeControls('plain text')).toBe('plain text');
  });
});

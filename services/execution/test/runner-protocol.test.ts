import { describe, expect, it } from 'vitest';
import { LineSplitter, logLineOf, splitFrameLine } from '../src/runner-protocol.js';

const parseFrame = (line: string, key: string) => splitFrameLine(line, key).frame;

const nonce = '0123456789abcdef0123456789abcdef';

describe('parseFrame', () => {
  it('reads frames carrying the nonce', () => {
    expect(parseFrame(`${nonce} {"type":"ready"}`, nonce)).toEqual({ type: 'ready' });
    expect(
      parseFrame(`${nonce} {"type":"result","run":2,"ok":true,"value":{"sum":3}}`, nonce),
    ).toEqual({ type: 'result', run: 2, ok: true, value: { sum: 3 } });
    expect(
      parseFrame(`${nonce} {"type":"log","level":"warn","message":"careful","time":5}`, nonce),
    ).toEqual({ type: 'log', level: 'warn', message: 'careful', time: 5 });
  });

  it('turns a missing result value into null and fills in run, phase and error fields', () => {
    expect(parseFrame(`${nonce} {"type":"result","ok":true}`, nonce)).toMatchObject({
      value: null,
    });
    expect(
      parseFrame(`${nonce} {"type":"result","ok":false,"error":{"message":"m"}}`, nonce),
    ).toEqual({
      type: 'result',
      run: 0,
      ok: false,
      phase: 'handler',
      error: { name: 'Error', message: 'm', stack: '' },
    });
    expect(
      parseFrame(`${nonce} {"type":"log","level":"loud","message":7,"time":"x"}`, nonce),
    ).toMatchObject({ type: 'log', level: 'info', message: '' });
  });

  it('separates output glued in front of a frame by a partial line', () => {
    expect(splitFrameLine(`no newline${nonce} {"type":"ready"}`, nonce)).toEqual({
      output: 'no newline',
      frame: { type: 'ready' },
    });
    expect(splitFrameLine('just output', nonce)).toEqual({ output: 'just output' });
  });

  it('treats anything without the nonce as plain output', () => {
    expect(parseFrame('{"type":"result","ok":true,"value":1}', nonce)).toBeUndefined();
    expect(
      parseFrame(`${'f'.repeat(32)} {"type":"result","ok":true,"value":1}`, nonce),
    ).toBeUndefined();
    expect(parseFrame(`${nonce} not json`, nonce)).toBeUndefined();
    expect(parseFrame(`${nonce} {"type":"other"}`, nonce)).toBeUndefined();
  });
});

describe('LineSplitter', () => {
  it('joins lines split across chunks, including multi-byte characters', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((line) => lines.push(line));
    const bytes = Buffer.from('one\nt€o\nthree', 'utf8');
    for (let i = 0; i < bytes.length; i += 2) splitter.push(bytes.subarray(i, i + 2));
    splitter.end();
    expect(lines).toEqual(['one', 't€o', 'three']);
  });

  it('escapes invalid UTF-8 and control characters instead of failing', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((line) => lines.push(line));
    splitter.push(Buffer.from([0x61, 0xff, 0x62, 0x1b, 0x5b, 0x33, 0x31, 0x6d, 0x00, 0x0a]));
    expect(lines).toEqual(['a\\xffb\\x1b[31m\\x00']);
  });

  it('escapes control characters in framed log messages', () => {
    const frame = parseFrame(
      `${nonce} {"type":"log","level":"info","message":"\\u001b[2Jred\\r\\tok\\nnext","time":1}`,
      nonce,
    );
    expect(frame?.type === 'log' && logLineOf(frame)).toEqual({
      level: 'INFO',
      message: '\\x1b[2Jred\\x0d\tok\nnext',
      time: 1,
    });
  });
});

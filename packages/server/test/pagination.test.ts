import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { decodePageToken, encodePageToken, resolvePageSize } from '../src/index.js';

describe('page tokens', () => {
  it('round-trip a cursor', () => {
    const cursor = { createdAt: new Date('2026-01-02T03:04:05.678Z'), id: 'abc' };
    expect(decodePageToken(encodePageToken(cursor))).toEqual(cursor);
    expect(decodePageToken('')).toBeUndefined();
  });
  it('refuse a token that was not issued', () => {
    expect(() => decodePageToken('bm9wZQ')).toThrow(invalidArgument(/^page_token: /));
  });
  it('default and cap the page size', () => {
    expect(resolvePageSize(0)).toBe(50);
    expect(resolvePageSize(500)).toBe(500);
    expect(resolvePageSize(501)).toBe(500);
    expect(resolvePageSize(4_294_967_295)).toBe(500);
  });
});

function invalidArgument(message: RegExp) {
  return expect.objectContaining({
    code: Code.InvalidArgument,
    rawMessage: expect.stringMatching(message),
  });
}

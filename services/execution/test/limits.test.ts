import { create } from '@bufbuild/protobuf';
import { ConnectError } from '@connectrpc/connect';
import { loadConfig } from '@assist-tee/config';
import { LimitsSchema } from '@assist-tee/proto';
import { describe, expect, it } from 'vitest';
import { resolveLimits } from '../src/limits.js';

const config = loadConfig({}).execution;

describe('resolveLimits', () => {
  it('fills zeros with defaults', () => {
    expect(resolveLimits(undefined, config)).toEqual(config.defaults);
    const limits = resolveLimits(create(LimitsSchema, { timeoutMs: 500 }), config);
    expect(limits).toEqual({ ...config.defaults, timeoutMs: 500 });
  });

  it('names the field above its maximum', () => {
    const error = (() => {
      try {
        resolveLimits(create(LimitsSchema, { memoryMb: config.maxima.memoryMb + 1 }), config);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).rawMessage).toBe(
      `limits.memory_mb: ${config.maxima.memoryMb + 1} is above the maximum of ${config.maxima.memoryMb}`,
    );
  });

  it('refuses too little memory', () => {
    expect(() => resolveLimits(create(LimitsSchema, { memoryMb: 8 }), config)).toThrow(
      /limits.memory_mb: must be at least 64/,
    );
  });
});

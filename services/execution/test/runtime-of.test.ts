import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { EnvironmentSchema, ErrorInfoSchema, Runtime } from '@assist-tee/proto';
import type { SandboxRuntimes } from '@assist-tee/runtime-core';
import { describe, expect, it } from 'vitest';
import { runtimeOf } from '../src/launch.js';

describe('runtimeOf', () => {
  it('refuses an environment whose runtime this server lacks, with the reason and the runtime', () => {
    const environment = create(EnvironmentSchema, { id: 'env-1', runtime: Runtime.BUN });
    const error = ConnectError.from(
      (() => {
        try {
          // A server built without Bun (every build has both today; a new enum value would do).
          runtimeOf({ runtimes: {} as SandboxRuntimes }, environment);
        } catch (e) {
          return e;
        }
      })(),
    );
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.rawMessage).toBe(
      'environment "env-1" uses runtime BUN, which this server cannot run',
    );
    expect(error.findDetails(ErrorInfoSchema)).toEqual([
      expect.objectContaining({
        reason: 'RUNTIME_UNAVAILABLE',
        metadata: { environmentId: 'env-1', runtime: 'RUNTIME_BUN' },
      }),
    ]);
  });
});

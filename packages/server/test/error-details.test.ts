import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from '@assist-tee/proto';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import {
  ConcurrencyQuota,
  ERROR_DOMAIN,
  failedPrecondition,
  instanceLimit,
  invalidArgument,
  SandboxMemory,
} from '../src/index.js';

const refusal = async (attempt: () => unknown) => {
  try {
    await attempt();
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error('expected a refusal');
};

/** The details a client would find: ErrorInfo (with its domain checked), and the retry delay. */
const detailsOf = (error: ConnectError) => {
  const [info, ...moreInfo] = error.findDetails(ErrorInfoSchema);
  expect(moreInfo).toEqual([]);
  expect(info?.domain).toBe(ERROR_DOMAIN);
  const retry = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return {
    code: error.code,
    reason: info?.reason,
    metadata: info?.metadata,
    retryDelaySeconds: retry === undefined ? undefined : Number(retry.seconds),
  };
};

describe('error details', () => {
  it('names the field of a validation error in a BadRequest, beside the message', () => {
    const error = invalidArgument('limits.timeout_ms', 'is above the maximum of 60000');
    expect(error.rawMessage).toBe('limits.timeout_ms: is above the maximum of 60000');
    expect(error.findDetails(BadRequestSchema).map((detail) => detail.fieldViolations)).toEqual([
      [
        expect.objectContaining({
          field: 'limits.timeout_ms',
          description: 'is above the maximum of 60000',
        }),
      ],
    ]);
    expect(error.findDetails(ErrorInfoSchema)).toEqual([]);
  });

  it('gives a precondition a reason and string metadata, and no retry hint', () => {
    const error = failedPrecondition('ENVIRONMENT_NOT_READY', 'not READY', {
      environmentId: 'e1',
      attempts: 3,
    });
    expect(detailsOf(error)).toEqual({
      code: Code.FailedPrecondition,
      reason: 'ENVIRONMENT_NOT_READY',
      metadata: { environmentId: 'e1', attempts: '3' },
      retryDelaySeconds: undefined,
    });
  });

  it('tells a tenant over its concurrency quota which quota, and to retry', async () => {
    const quota = new ConcurrencyQuota(1, 'executions', 'TEE_QUOTA_CONCURRENT_EXECUTIONS');
    const release = quota.acquire('acme');
    expect(detailsOf(await refusal(() => quota.acquire('acme')))).toEqual({
      code: Code.ResourceExhausted,
      reason: 'TENANT_QUOTA_CONCURRENT_EXECUTIONS',
      metadata: {
        tenant: 'acme',
        limit: '1',
        current: '1',
        setting: 'TEE_QUOTA_CONCURRENT_EXECUTIONS',
      },
      retryDelaySeconds: 1,
    });
    release();
  });

  it('refuses work beyond an instance limit or its sandbox memory as INSTANCE_BUSY, to retry', async () => {
    const limit = instanceLimit(1, 'setups', 'TEE_MAX_RUNNING_SETUPS');
    const release = limit.acquire();
    expect(detailsOf(await refusal(() => limit.acquire()))).toEqual({
      code: Code.ResourceExhausted,
      reason: 'INSTANCE_BUSY',
      metadata: {
        resource: 'running_setups',
        limit: '1',
        current: '1',
        setting: 'TEE_MAX_RUNNING_SETUPS',
      },
      retryDelaySeconds: 1,
    });
    release();

    const memory = new SandboxMemory(1024);
    const running = await memory.admit(768, 'an execution');
    expect(detailsOf(await refusal(() => memory.admit(512, 'an execution')))).toEqual({
      code: Code.ResourceExhausted,
      reason: 'INSTANCE_BUSY',
      metadata: {
        resource: 'sandbox_memory',
        limitMb: '1024',
        currentMb: '768',
        requestedMb: '512',
        setting: 'TEE_SANDBOX_MEMORY_MB',
      },
      retryDelaySeconds: 1,
    });
    running.release();
  });
});

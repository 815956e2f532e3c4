import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { DescMessage } from '@bufbuild/protobuf';
import { MethodOptions_IdempotencyLevel } from '@bufbuild/protobuf/wkt';
import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
} from '@connectrpc/connect';
import { createAsyncIterable } from '@connectrpc/connect/protocol';

export interface RetryOptions {
  /** Attempts in all, the first included; 1 turns retries off. Default 5. */
  maxAttempts?: number;
  /** Wait before the second attempt; it doubles for each next one. Default 100 ms. */
  initialDelayMs?: number;
  /** The most a wait grows to. Default 2 s. */
  maxDelayMs?: number;
}

/**
 * Calls that create or run something (their request has a `request_id`) get a fresh UUID as
 * their request_id when the caller left it empty, so that a retry of theirs is recognised by
 * the server and never does the work twice. Those calls, and the calls without side effects,
 * are retried on `unavailable`, with the same request, after an exponential backoff with full
 * jitter. A stream is retried only when it failed before its first message.
 */
export function retryInterceptor(options: RetryOptions = {}): Interceptor {
  const maxAttempts = options.maxAttempts ?? 5;
  const initialDelayMs = options.initialDelayMs ?? 100;
  const maxDelayMs = options.maxDelayMs ?? 2_000;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new Error(`retry.maxAttempts: expected a whole number of at least 1, got ${maxAttempts}`);
  }
  const backoff = (attempt: number, signal: AbortSignal) =>
    delay(Math.random() * Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1)), undefined, {
      signal,
    });
  const retryable = (error: unknown, attempt: number, signal: AbortSignal) =>
    attempt < maxAttempts && !signal.aborted && ConnectError.from(error).code === Code.Unavailable;

  return (next) => async (request) => {
    const keyed = hasRequestId(request.method.input);
    const safe =
      keyed || request.method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
    if (!request.stream) {
      // A copy: the caller's message may be sent again, and then needs a request_id of its own.
      const keyedRequest = keyed
        ? { ...request, message: withRequestId(request.message) }
        : request;
      for (let attempt = 1; ; attempt++) {
        try {
          return await next(keyedRequest);
        } catch (error) {
          if (!safe || !retryable(error, attempt, request.signal)) throw error;
          await backoff(attempt, request.signal);
        }
      }
    }
    // A server stream's one request message is read once, then sent again as is on a retry.
    const inputs: unknown[] = [];
    for await (const message of request.message) {
      inputs.push(keyed ? withRequestId(message) : message);
    }
    let attempt = 0;
    const open = async (): Promise<StreamResponse> => {
      for (;;) {
        attempt++;
        try {
          const stream = { ...request, message: createAsyncIterable(inputs) } as StreamRequest;
          return (await next(stream)) as StreamResponse;
        } catch (error) {
          if (!safe || !retryable(error, attempt, request.signal)) throw error;
          await backoff(attempt, request.signal);
        }
      }
    };
    const first = await open();
    return {
      ...first,
      message: (async function* () {
        for (let current = first; ;) {
          let received = false;
          try {
            for await (const message of current.message) {
              received = true;
              yield message;
            }
            return;
          } catch (error) {
            if (!safe || received || !retryable(error, attempt, request.signal)) throw error;
            await backoff(attempt, request.signal);
            current = await open();
          }
        }
      })(),
    };
  };
}

function hasRequestId(input: DescMessage): boolean {
  return input.fields.some(
    (field) => field.localName === 'requestId' && field.fieldKind === 'scalar',
  );
}

function withRequestId<T>(message: T): T {
  const { requestId } = message as { requestId: string };
  return requestId === '' ? { ...message, requestId: randomUUID() } : message;
}

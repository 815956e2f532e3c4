import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createLogger, type Logger } from '@assist-tee/logger';
import { vi } from 'vitest';
import type { ReceivedEvent } from '../src/index.js';

// @assist-tee/testing depends on this package, so its helpers cannot be used here.
export const NATS_URL = process.env.TEE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

export const testPrefix = (): string => `t_${randomBytes(4).toString('hex')}`;

// Silent by default: these tests provoke failures on purpose. TEE_LOG_LEVEL=debug shows them.
export const testLogger = (): Logger =>
  createLogger({ level: process.env.TEE_LOG_LEVEL ?? 'silent' }, { name: 'events-test' });

export async function rawConnection(): Promise<NatsConnection> {
  try {
    return await connect({ servers: NATS_URL });
  } catch (error) {
    throw new Error(`NATS is not reachable at ${NATS_URL}; run \`npm run bootstrap\``, {
      cause: error,
    });
  }
}

export async function deleteStream(streamName: string): Promise<void> {
  const nc = await rawConnection();
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(streamName).catch(() => false);
  } finally {
    await nc.close();
  }
}

/** Polls until the predicate holds, failing after timeoutMs. */
export async function eventually(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
): Promise<void> {
  await vi.waitUntil(predicate, { timeout: timeoutMs, interval: 20 });
}

/**
 * Waits until a durable has nothing left to deliver and nothing delivered unacknowledged: every
 * event it will ever hand its handler has been handled, so a test can assert there was no more.
 */
export async function caughtUp(streamName: string, durable: string): Promise<void> {
  const nc = await rawConnection();
  try {
    const jsm = await jetstreamManager(nc);
    await eventually(async () => {
      const info = await jsm.consumers.info(streamName, durable);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    });
  } finally {
    await nc.close();
  }
}

export const pause = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/** A handler that records what it is given, and the list it records into. */
export function recorder<T>(pick: (event: ReceivedEvent) => T): {
  items: T[];
  handle: (event: ReceivedEvent) => Promise<void>;
} {
  const items: T[] = [];
  return {
    items,
    handle: (event) => {
      items.push(pick(event));
      return Promise.resolve();
    },
  };
}

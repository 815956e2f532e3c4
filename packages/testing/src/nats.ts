import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import {
  connectEventBus,
  decodeEvent,
  eventStreamName,
  type ReceivedEvent,
} from '@assist-tee/events';
import { createLogger } from '@assist-tee/logger';
import { uniqueSuffix } from './names.js';

/** A subject prefix (`t_<suffix>`) of one's own: its stream is `T_<SUFFIX>_EVENTS`. */
export function testSubjectPrefix(): string {
  return `t_${uniqueSuffix()}`;
}

/** Deletes a test's stream (and with it its consumers); a missing stream is fine. */
export async function deleteTestStream(servers: string, streamName: string): Promise<void> {
  const nc = await connectForTest(servers);
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(streamName).catch((error: unknown) => {
      if (!/stream not found/i.test((error as Error).message)) throw error;
    });
  } finally {
    await nc.close();
  }
}

/** How many messages a stream holds: one per event id, unless a duplicate got through. */
export async function streamMessageCount(servers: string, streamName: string): Promise<number> {
  const nc = await connectForTest(servers);
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.info(streamName)).state.messages;
  } finally {
    await nc.close();
  }
}

/** The headers stored with a stream's message `seq` (Nats-Msg-Id, ce-*, ...). */
export async function storedHeaders(
  servers: string,
  streamName: string,
  seq: number,
): Promise<MsgHdrs | undefined> {
  const nc = await connectForTest(servers);
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.getMessage(streamName, { seq }))?.header;
  } finally {
    await nc.close();
  }
}

export interface CollectedEvents {
  /** Every event under the prefix so far, oldest first, including those before the call. */
  readonly events: ReceivedEvent[];
  /** Subjects of messages that did not decode as events. */
  readonly undecodable: string[];
  /** Resolves with the events once the predicate holds; rejects after timeoutMs. */
  waitFor(
    predicate: (events: ReceivedEvent[]) => boolean,
    timeoutMs?: number,
  ): Promise<ReceivedEvent[]>;
  /**
   * Resolves with the events once every message the stream holds now has been collected, so
   * that a test can assert what did not arrive; rejects after timeoutMs.
   */
  caughtUp(timeoutMs?: number): Promise<ReceivedEvent[]>;
  stop(): Promise<void>;
}

/**
 * Follows every event under a prefix with an ordered (ephemeral) consumer, from the start of
 * the stream, for assertions. Creates the stream when nothing has yet.
 */
export async function collectEvents(servers: string, prefix: string): Promise<CollectedEvents> {
  // The bus creates the stream with the production config, should this run first.
  const bus = await connectEventBus({
    servers,
    subjectPrefix: prefix,
    name: 'collect-events',
    logger: createLogger({ level: 'silent' }),
  });
  await bus.close();

  const nc = await connectForTest(servers);
  const messages = await (await jetstream(nc).consumers.get(eventStreamName(prefix))).consume();
  const events: ReceivedEvent[] = [];
  const undecodable: string[] = [];
  const waiters = new Set<() => void>();
  let lastSequence = 0;

  const loop = (async () => {
    for await (const msg of messages) {
      lastSequence = msg.seq;
      try {
        const decoded = decodeEvent(prefix, msg.subject, msg.data);
        events.push({
          ...decoded,
          subject: msg.subject,
          streamSequence: msg.seq,
          redelivered: msg.redelivered,
        });
      } catch {
        undecodable.push(msg.subject);
      }
      waiters.forEach((check) => check());
    }
  })();

  const until = (done: () => boolean, timeoutMs: number) =>
    new Promise<ReceivedEvent[]>((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(events);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        const seen = events.map((event) => event.type).join(', ') || 'none';
        reject(new Error(`events did not arrive within ${timeoutMs} ms; seen: ${seen}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });

  return {
    events,
    undecodable,
    waitFor: (predicate, timeoutMs = 10_000) => until(() => predicate(events), timeoutMs),
    caughtUp: async (timeoutMs = 10_000) => {
      const jsm = await jetstreamManager(nc);
      const { state } = await jsm.streams.info(eventStreamName(prefix));
      return until(() => lastSequence >= state.last_seq, timeoutMs);
    },
    stop: async () => {
      void messages.close();
      await loop;
      await nc.close();
    },
  };
}

async function connectForTest(servers: string): Promise<NatsConnection> {
  try {
    return await connect({ servers: servers.split(',') });
  } catch (error) {
    throw new Error(
      `NATS is not reachable at ${servers} (${(error as Error).message}); run \`npm run bootstrap\``,
      { cause: error },
    );
  }
}

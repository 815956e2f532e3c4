import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import { eventTypes, type EventType } from '@assist-tee/events';
import { GetStatusResponseSchema, ReaperService } from '@assist-tee/proto';
import type { Infrastructure, Service } from '@assist-tee/server';

/**
 * The ReaperService. For now it follows every event through a durable consumer and reports
 * what it saw; sweeping (TTL expiry, orphans, stuck executions) arrives with its own issue.
 */
export function createReaperService(infrastructure: Infrastructure): Service {
  const { bus, config } = infrastructure;
  const logger = infrastructure.logger.child({ subsystem: 'reaper' });
  const startTime = new Date();
  const consumed = new Map<string, bigint>();
  let consumer: { stop(): Promise<void> } | undefined;

  const implementation: ServiceImpl<typeof ReaperService> = {
    getStatus: () =>
      create(GetStatusResponseSchema, {
        instanceId: config.instanceId,
        startTime: timestampFromDate(startTime),
        eventsConsumed: Object.fromEntries(consumed),
      }),
    sweep: () => {
      throw new ConnectError('sweeping is not implemented yet', Code.Unimplemented);
    },
  };
  return {
    name: 'reaper',
    routes: (router) => router.service(ReaperService, implementation),
    healthChecks: [],
    start: async () => {
      consumer = await bus.consume({
        durable: 'reaper',
        types: Object.keys(eventTypes) as EventType[],
        handle: (event) => {
          consumed.set(event.type, (consumed.get(event.type) ?? 0n) + 1n);
          logger.debug({ type: event.type, eventId: event.message.eventId }, 'event');
        },
      });
    },
    stop: async () => {
      await consumer?.stop();
    },
  };
}

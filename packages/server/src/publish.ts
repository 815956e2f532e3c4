import type { EventBus, EventMessage, EventType } from '@assist-tee/events';
import type { Logger } from '@assist-tee/logger';

/**
 * Publishes an event after the state it describes is committed. If NATS is down the event is
 * logged as lost and the API call still succeeds; the transactional outbox (a later issue)
 * closes that gap.
 */
export async function publishAfterCommit<T extends EventType>(
  bus: EventBus,
  logger: Logger,
  type: T,
  message: EventMessage<T>,
): Promise<void> {
  try {
    await bus.publish(type, message);
  } catch (error) {
    logger.error({ err: error, type, eventId: message.eventId }, 'publishing an event failed');
  }
}

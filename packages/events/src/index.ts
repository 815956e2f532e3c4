export {
  decodeEvent,
  encodeEvent,
  EventDecodeError,
  eventHeader,
  eventStreamName,
  eventSubject,
  eventTypes,
  isEventType,
  type DecodedEvent,
  type EventMessage,
  type EventType,
  type ReceivedEvent,
} from './event-types.js';
export { connectEventBus, type EventBus, type EventBusOptions } from './event-bus.js';
export type { ConsumeOptions, Consumption } from './durable-consumer.js';

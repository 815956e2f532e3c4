export {
  encodeEvent,
  EventDecodeError,
  eventHeader,
  eventTypes,
  isEventType,
  type DecodedEvent,
  type EventMessage,
  type EventType,
  type ReceivedEvent,
} from './event-types.js';
export { decodeEvent, eventStreamName, eventSubject } from './event-subjects.js';
export { connectEventBus, type EventBus, type EventBusOptions } from './event-bus.js';
export type { ConsumeOptions, Consumption } from './durable-consumer.js';

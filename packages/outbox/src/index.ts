export {
  type Outbox,
  type OutboxEvent,
  type OutboxOptions,
  type OutboxRow,
  outboxRow,
  startOutbox,
} from './outbox.js';

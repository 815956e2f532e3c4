export { startOutbox, type Outbox, type OutboxOptions } from './outbox.js';

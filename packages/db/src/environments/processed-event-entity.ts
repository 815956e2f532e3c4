import { defineEntity, p } from '@mikro-orm/core';

/**
 * Events the environments service has applied, by id: a redelivered event (a consumer that
 * crashed before its ack) is recognised and skipped. Must match migrations/ exactly.
 */
export const ProcessedEventSchema = defineEntity({
  name: 'ProcessedEventEntity',
  schema: 'environments',
  tableName: 'processed_event',
  properties: {
    eventId: p.uuid().primary(),
    processedAt: p.datetime(),
  },
});
export class ProcessedEventEntity extends ProcessedEventSchema.class {}
ProcessedEventSchema.setClass(ProcessedEventEntity);

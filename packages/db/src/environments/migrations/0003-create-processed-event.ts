import { Migration } from '@mikro-orm/migrations';

/** Event ids already applied by the service's consumers, for idempotent handling. */
export class CreateProcessedEvent extends Migration {
  override up(): void {
    this.addSql(`
      create table "environments"."processed_event" (
        "event_id" uuid not null primary key,
        "processed_at" timestamptz not null
      )
    `);
  }

  override down(): void {
    this.addSql(`drop table "environments"."processed_event"`);
  }
}

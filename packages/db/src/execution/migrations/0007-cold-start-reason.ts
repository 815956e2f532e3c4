import { Migration } from '@mikro-orm/migrations';

/** Why an execution did not get a warm sandbox; null when it did (and for older rows). */
export class ColdStartReason extends Migration {
  override up(): void {
    this.addSql(`
      alter table "execution"."execution"
        add column "cold_start_reason" text null,
        add constraint "execution_cold_start_reason_check"
          check ("cold_start_reason" in ('NO_POOL', 'LIMITS', 'EVICTED', 'POOL_EMPTY'))
    `);
  }

  override down(): void {
    this.addSql(`alter table "execution"."execution" drop column "cold_start_reason"`);
  }
}

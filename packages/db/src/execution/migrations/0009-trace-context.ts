import { Migration } from '@mikro-orm/migrations';
import { addOutboxTraceparentSql, dropOutboxTraceparentSql } from '../../outbox/migration-sql.js';

/** An execution keeps the trace id of the call that ran it; its events carry that trace. */
export class ExecutionTraceContext extends Migration {
  override up(): void {
    this.addSql(`alter table "execution"."execution" add column "trace_id" text null`);
    this.addSql(addOutboxTraceparentSql('execution'));
  }

  override down(): void {
    this.addSql(dropOutboxTraceparentSql('execution'));
    this.addSql(`alter table "execution"."execution" drop column "trace_id"`);
  }
}

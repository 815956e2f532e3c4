import { Migration } from '@mikro-orm/migrations';
import { addOutboxTraceparentSql, dropOutboxTraceparentSql } from '../../outbox/migration-sql.js';

/** Events carry the trace of the change they report (migration 0009 of the execution schema). */
export class EnvironmentsOutboxTraceparent extends Migration {
  override up(): void {
    this.addSql(addOutboxTraceparentSql('environments'));
  }

  override down(): void {
    this.addSql(dropOutboxTraceparentSql('environments'));
  }
}

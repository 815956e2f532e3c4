import { Migration } from '@mikro-orm/migrations';
import { createOutboxSql, dropOutboxSql } from '../../outbox/migration-sql.js';

/** The transactional outbox: events are written with the state they describe. */
export class CreateEnvironmentsOutbox extends Migration {
  override up(): void {
    createOutboxSql('environments').forEach((sql) => this.addSql(sql));
  }

  override down(): void {
    dropOutboxSql('environments').forEach((sql) => this.addSql(sql));
  }
}

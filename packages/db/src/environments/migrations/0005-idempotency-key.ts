import { Migration } from '@mikro-orm/migrations';
import { createIdempotencyKeySql, dropIdempotencyKeySql } from '../../idempotency/migration-sql.js';

/** request_id of CreateEnvironment and DeleteEnvironment: a retry gets the first answer. */
export class EnvironmentsIdempotencyKey extends Migration {
  override up(): void {
    createIdempotencyKeySql('environments').forEach((sql) => this.addSql(sql));
  }

  override down(): void {
    dropIdempotencyKeySql('environments').forEach((sql) => this.addSql(sql));
  }
}

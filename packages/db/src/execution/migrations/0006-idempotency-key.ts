import { Migration } from '@mikro-orm/migrations';
import { createIdempotencyKeySql, dropIdempotencyKeySql } from '../../idempotency/migration-sql.js';

/** request_id of Execute and ExecuteStream: a retry gets the first execution. */
export class ExecutionIdempotencyKey extends Migration {
  override up(): void {
    createIdempotencyKeySql('execution').forEach((sql) => this.addSql(sql));
  }

  override down(): void {
    dropIdempotencyKeySql('execution').forEach((sql) => this.addSql(sql));
  }
}

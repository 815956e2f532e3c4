import { Migration } from '@mikro-orm/migrations';

/** Adds PROCESS_LIMIT: a sandbox that hit its process limit ends with a limit status. */
export class ProcessLimitStatus extends Migration {
  override up(): void {
    this.addSql(`
      alter table "execution"."execution"
        drop constraint "execution_status_check",
        add constraint "execution_status_check"
          check ("status" in (
            'RUNNING', 'SUCCEEDED', 'HANDLER_ERROR', 'TIMEOUT', 'OOM', 'OUTPUT_LIMIT',
            'PROCESS_LIMIT', 'SANDBOX_ERROR'
          ))
    `);
  }

  override down(): void {
    this.addSql(`
      alter table "execution"."execution"
        drop constraint "execution_status_check",
        add constraint "execution_status_check"
          check ("status" in (
            'RUNNING', 'SUCCEEDED', 'HANDLER_ERROR', 'TIMEOUT', 'OOM', 'OUTPUT_LIMIT',
            'SANDBOX_ERROR'
          ))
    `);
  }
}

import { Migration } from '@mikro-orm/migrations';

/** Executions belong to their environment's tenant; older ones to "default". */
export class ExecutionTenant extends Migration {
  override up(): void {
    this.addSql(
      `alter table "execution"."execution" add column "tenant_id" text not null default 'default'`,
    );
    this.addSql(`alter table "execution"."execution" alter column "tenant_id" drop default`);
  }

  override down(): void {
    this.addSql(`alter table "execution"."execution" drop column "tenant_id"`);
  }
}

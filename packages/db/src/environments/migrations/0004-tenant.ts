import { Migration } from '@mikro-orm/migrations';

/** Environments belong to tenants; those made before tenants belong to "default". */
export class EnvironmentTenant extends Migration {
  override up(): void {
    this.addSql(
      `alter table "environments"."environment" add column "tenant_id" text not null default 'default'`,
    );
    this.addSql(`alter table "environments"."environment" alter column "tenant_id" drop default`);
    this.addSql(`
      create index "environment_tenant_id_created_at_id_idx"
        on "environments"."environment" ("tenant_id", "created_at" desc, "id")
    `);
  }

  override down(): void {
    this.addSql(`drop index "environments"."environment_tenant_id_created_at_id_idx"`);
    this.addSql(`alter table "environments"."environment" drop column "tenant_id"`);
  }
}

import { Migration } from '@mikro-orm/migrations';

export class CreateEnvironments extends Migration {
  override up(): void {
    this.addSql(`
      create table "environments"."environment" (
        "id" uuid not null primary key,
        "status" text not null
          constraint "environment_status_check"
          check ("status" in ('PENDING', 'READY', 'FAILED', 'DELETED')),
        "runtime" text not null
          constraint "environment_runtime_check" check ("runtime" in ('DENO', 'BUN')),
        "main_module" text not null,
        "module_paths" jsonb not null,
        "modules_size_bytes" bigint not null,
        "dependencies" jsonb not null,
        "permissions" jsonb not null,
        "ttl_seconds" int not null,
        "labels" jsonb not null,
        "error" text null,
        "lockfile" text null,
        "execution_count" bigint not null default 0,
        "created_at" timestamptz not null,
        "updated_at" timestamptz not null,
        "last_used_at" timestamptz null,
        "deleted_at" timestamptz null
      )
    `);
    this.addSql(`
      create index "environment_status_created_at_id_idx"
        on "environments"."environment" ("status", "created_at" desc, "id")
    `);
  }

  override down(): void {
    this.addSql(`drop table "environments"."environment"`);
  }
}

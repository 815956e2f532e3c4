import { Migration } from '@mikro-orm/migrations';

export class CreateExecutions extends Migration {
  override up(): void {
    this.addSql(`
      create table "execution"."execution" (
        "id" uuid not null primary key,
        "environment_id" uuid not null,
        "status" text not null
          constraint "execution_status_check"
          check ("status" in (
            'RUNNING', 'SUCCEEDED', 'HANDLER_ERROR', 'TIMEOUT', 'OOM', 'OUTPUT_LIMIT',
            'SANDBOX_ERROR'
          )),
        "result" jsonb null,
        "error" jsonb null,
        "logs" jsonb not null,
        "output_truncated" boolean not null,
        "exit_code" int null,
        "duration_ms" int null,
        "limits" jsonb not null,
        "warm" boolean not null default false,
        "instance_id" text not null,
        "created_at" timestamptz not null,
        "finished_at" timestamptz null
      )
    `);
    this.addSql(`
      create index "execution_environment_id_created_at_id_idx"
        on "execution"."execution" ("environment_id", "created_at" desc, "id")
    `);
  }

  override down(): void {
    this.addSql(`drop table "execution"."execution"`);
  }
}

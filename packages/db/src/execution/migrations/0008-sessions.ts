import { Migration } from '@mikro-orm/migrations';

/** Sessions (one sandbox kept for a conversation) and the session each execution ran in. */
export class Sessions extends Migration {
  override up(): void {
    this.addSql(`
      create table "execution"."session" (
        "id" uuid not null primary key,
        "environment_id" uuid not null,
        "tenant_id" text not null,
        "status" text not null
          constraint "session_status_check" check ("status" in ('ACTIVE', 'ENDED')),
        "limits" jsonb not null,
        "idle_timeout_ms" int not null,
        "max_lifetime_ms" int not null,
        "labels" jsonb not null,
        "end_reason" text null
          constraint "session_end_reason_check"
          check ("end_reason" in (
            'REQUESTED', 'IDLE_TIMEOUT', 'MAX_LIFETIME', 'ENVIRONMENT_DELETED', 'CALL_TIMEOUT',
            'OOM', 'OUTPUT_LIMIT', 'PROCESS_LIMIT', 'CRASHED', 'LOST'
          )),
        "end_message" text null,
        "end_execution_id" uuid null,
        "call_count" int not null default 0,
        "warm" boolean not null,
        "instance_id" text not null,
        "container_id" text null,
        "created_at" timestamptz not null,
        "last_call_at" timestamptz null,
        "expires_at" timestamptz not null,
        "ended_at" timestamptz null
      )
    `);
    this.addSql(`
      create index "session_tenant_id_created_at_id_idx"
        on "execution"."session" ("tenant_id", "created_at" desc, "id")
    `);
    this.addSql(`
      create index "session_environment_id_created_at_id_idx"
        on "execution"."session" ("environment_id", "created_at" desc, "id")
    `);
    this.addSql(`
      create index "session_instance_id_status_idx"
        on "execution"."session" ("instance_id", "status")
    `);
    // Null for executions outside a session (all older ones).
    this.addSql(`alter table "execution"."execution" add column "session_id" uuid null`);
    this.addSql(`
      create index "execution_session_id_created_at_id_idx"
        on "execution"."execution" ("session_id", "created_at" desc, "id")
    `);
  }

  override down(): void {
    this.addSql(`drop index "execution"."execution_session_id_created_at_id_idx"`);
    this.addSql(`alter table "execution"."execution" drop column "session_id"`);
    this.addSql(`drop table "execution"."session"`);
  }
}

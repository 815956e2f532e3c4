import { Migration } from '@mikro-orm/migrations';

export class CreateSweeps extends Migration {
  override up(): void {
    this.addSql(`
      create table "reaper"."sweep" (
        "id" uuid not null primary key,
        "instance_id" text not null,
        "started_at" timestamptz not null,
        "finished_at" timestamptz not null,
        "report" jsonb not null
      )
    `);
    this.addSql(`create index "sweep_started_at_idx" on "reaper"."sweep" ("started_at")`);
  }

  override down(): void {
    this.addSql(`drop table "reaper"."sweep"`);
  }
}

import { Migration } from '@mikro-orm/migrations';

export class CreateApiKeys extends Migration {
  override up(): void {
    this.addSql(`
      create table "auth"."api_key" (
        "id" uuid not null primary key,
        "tenant_id" text not null,
        "name" text not null,
        "key_hash" text not null constraint "api_key_key_hash_unique" unique,
        "created_at" timestamptz not null,
        "revoked_at" timestamptz null
      )
    `);
  }

  override down(): void {
    this.addSql(`drop table "auth"."api_key"`);
  }
}

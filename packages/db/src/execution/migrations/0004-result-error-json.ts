import { Migration } from '@mikro-orm/migrations';

/**
 * A handler's result and error are stored as json, not jsonb: jsonb cannot hold the character
 * U+0000, which a handler may return (a string read from /proc, a binary-ish value) or throw.
 */
export class ResultErrorJson extends Migration {
  override up(): void {
    this.addSql(`
      alter table "execution"."execution"
        alter column "result" type json using "result"::json,
        alter column "error" type json using "error"::json
    `);
  }

  override down(): void {
    this.addSql(`
      alter table "execution"."execution"
        alter column "result" type jsonb using "result"::jsonb,
        alter column "error" type jsonb using "error"::jsonb
    `);
  }
}

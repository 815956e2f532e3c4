// npm run keys -- create <tenant> [name] | list [tenant] | revoke <key id>
// Manages tenants' API keys in the configured database (TEE_DATABASE_URL); running services see
// a new or revoked key within seconds, without a restart.
import { loadConfig } from '@assist-tee/config';
import { createLogger } from '@assist-tee/logger';
import { isUuid, openApiKeys } from '@assist-tee/server';

const USAGE = 'usage: npm run keys -- create <tenant> [name] | list [tenant] | revoke <key id>';
const [command, first, second] = process.argv.slice(2);

const config = loadConfig();
const keys = await openApiKeys({
  databaseUrl: config.databaseUrl,
  serviceKey: config.auth.serviceKey,
  logger: createLogger({ level: 'warn' }, { name: 'keys' }),
});
try {
  process.exitCode = await run();
} catch (error) {
  // A bad tenant id, or the database: the reason, without a stack.
  console.error((error as Error).message);
  process.exitCode = 1;
} finally {
  await keys.close();
}

async function run(): Promise<number> {
  if (command === 'create' && first !== undefined) {
    const { id, key } = await keys.create(first, second ?? '');
    // The key alone on stdout, for scripts; it is not stored and cannot be shown again.
    console.error(`API key ${id} of tenant "${first}" (shown once):`);
    console.log(key);
    return 0;
  }
  if (command === 'list') {
    for (const key of await keys.list(first)) {
      const state = key.revokedAt === null ? 'live' : `revoked ${key.revokedAt.toISOString()}`;
      console.log([key.id, key.tenantId, key.createdAt.toISOString(), state, key.name].join('\t'));
    }
    return 0;
  }
  if (command === 'revoke' && first !== undefined) {
    const revoked = isUuid(first) && (await keys.revoke(first));
    console.error(revoked ? `revoked ${first}` : `no live key ${first}`);
    return revoked ? 0 : 1;
  }
  console.error(USAGE);
  return 2;
}

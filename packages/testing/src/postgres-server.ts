import { execFile } from 'node:child_process';
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, type PrivateServer } from './private-server.js';

const run = promisify(execFile);

/**
 * initdb + pg_ctl of the installed Postgres, as the `postgres` user (Postgres refuses root),
 * on a free loopback port; the url is the `postgres` database as its superuser (trust auth).
 * stop() is a fast shutdown: open connections are cut. Fails loudly without Postgres.
 */
export async function startPrivatePostgresServer(): Promise<PrivateServer> {
  const bin = await postgresBinDir();
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'tee-pg-'));
  const id = async (flag: string) => Number((await run('id', [flag, 'postgres'])).stdout.trim());
  await chown(dir, await id('-u'), await id('-g'));
  const data = join(dir, 'data');
  const asPostgres = (command: string, args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', join(bin, command), ...args]);

  await asPostgres('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync']);
  const pgCtl = (...args: string[]) => asPostgres('pg_ctl', ['-D', data, '-w', ...args]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  const start = async () => {
    await pgCtl('-o', options, '-l', join(dir, 'log'), 'start');
  };
  const stop = async () => {
    await pgCtl('-m', 'fast', 'stop');
  };

  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop,
    start,
    async destroy() {
      await stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function postgresBinDir(): Promise<string> {
  const root = '/usr/lib/postgresql';
  const versions = await readdir(root).catch(() => []);
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (newest === undefined) {
    throw new Error(`no Postgres under ${root}: run "npm run bootstrap" (it installs Postgres)`);
  }
  return join(root, newest, 'bin');
}

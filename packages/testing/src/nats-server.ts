import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, type PrivateServer } from './private-server.js';

const NATS_SERVER = '/usr/sbin/nats-server';

/**
 * Starts nats-server with JetStream on a free loopback port; fails loudly without the binary.
 * stop() is a SIGTERM; the JetStream store stays for the next start.
 */
export async function startPrivateNatsServer(): Promise<PrivateServer> {
  if (!existsSync(NATS_SERVER)) {
    throw new Error(`${NATS_SERVER} is missing: run "npm run bootstrap" (it installs nats-server)`);
  }
  const port = await freePort();
  const store = await mkdtemp(join(tmpdir(), 'tee-nats-'));
  let child: ChildProcess | undefined;

  const start = async () => {
    const started = spawn(
      NATS_SERVER,
      ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', store],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    child = started;
    // nats-server logs to stderr; it is ready once it says so.
    await new Promise<void>((resolve, reject) => {
      let log = '';
      const timer = setTimeout(
        () => reject(new Error(`nats-server did not start:\n${log}`)),
        10_000,
      );
      started.once('exit', (code) => reject(new Error(`nats-server exited with ${code}:\n${log}`)));
      started.stderr?.on('data', (chunk: Buffer) => {
        log += chunk.toString();
        if (log.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  };
  const stop = async () => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null) return;
    running.kill('SIGTERM');
    await once(running, 'exit');
  };

  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    stop,
    start,
    async destroy() {
      await stop();
      await rm(store, { recursive: true, force: true });
    },
  };
}

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const NATS_SERVER = '/usr/sbin/nats-server';

/** A NATS server of a test's own, to stop and start: the machine's shared one stays up. */
export interface PrivateNatsServer {
  readonly url: string;
  /** Stops the server (SIGTERM); its JetStream store stays for the next start. */
  stop(): Promise<void>;
  /** Starts it again on the same port and store. */
  start(): Promise<void>;
  /** Stops it and deletes its store. */
  destroy(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** Starts nats-server with JetStream on a free loopback port; fails loudly without the binary. */
export async function startPrivateNatsServer(): Promise<PrivateNatsServer> {
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

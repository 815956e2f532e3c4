import { once } from 'node:events';
import { createServer } from 'node:net';

/**
 * A server (NATS, Postgres) of a test's own, to stop and start under the services: the
 * machine's shared one stays up for the other tests.
 */
export interface PrivateServer {
  readonly url: string;
  /** Stops the server; its data stays for the next start. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and deletes its data. */
  destroy(): Promise<void>;
}

/** A loopback port nothing listens on now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

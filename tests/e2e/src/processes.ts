import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type AssistTeeClient, createAssistTeeClient } from '@assist-tee/client';
import { createLogger } from '@assist-tee/logger';
import { createDockerClient, SandboxDriver } from '@assist-tee/sandbox';
import { openApiKeys } from '@assist-tee/server';
import {
  createTestDatabase,
  deleteTestStream,
  removeLabelled,
  testSubjectPrefix,
  uniqueSuffix,
} from '@assist-tee/testing';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const SHARED_NATS_URL = 'nats://127.0.0.1:4222';

export interface ServiceProcess {
  child: ChildProcess;
  url: string;
  /** What it has logged so far (pino levels: 40 warn, 50 error). */
  logs: { level: number; msg?: string }[];
}

/** Starts `services/<name>/dist/main.js` and resolves with the URL it logs once serving. */
export async function startService(
  name: string,
  env: Record<string, string>,
): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [`${root}services/${name}/dist/main.js`], {
    // Port 0 for the API and the egress proxy: test processes run side by side.
    env: {
      ...process.env,
      TEE_EGRESS_PROXY_PORT: '0',
      ...env,
      TEE_PORT: '0',
      TEE_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const logs: ServiceProcess['logs'] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in time`)), 30_000);
    child.once('exit', (code) => reject(new Error(`${name} exited with code ${code}`)));
    lines.on('line', (line) => {
      // TEE_TEST_SERVICE_LOGS=1 shows what the service logs, to debug a failing test.
      if (process.env.TEE_TEST_SERVICE_LOGS === '1') process.stderr.write(`[${name}] ${line}\n`);
      // A process killed mid-write leaves half a line: not a log entry.
      let entry: { level: number; msg?: string; url?: string };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === 'serving' && entry.url) {
        clearTimeout(timer);
        resolve(entry.url);
      }
    });
  });
  return { child, url, logs };
}

/** Starts `services/<name>/dist/main.js` expecting it to fail; resolves with its code and output. */
export async function startFailingService(
  name: string,
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [`${root}services/${name}/dist/main.js`], {
    env: { ...process.env, TEE_EGRESS_PROXY_PORT: '0', ...env, TEE_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, output };
}

/** SIGTERM, or SIGKILL for a crash; resolves with the exit code (null when killed). */
export async function stopService(
  service: ServiceProcess,
  signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM',
): Promise<number | null> {
  if (service.child.exitCode !== null || service.child.signalCode !== null) {
    return service.child.exitCode;
  }
  service.child.kill(signal);
  const [code] = (await once(service.child, 'exit')) as [number | null];
  return code;
}

/**
 * What a test of services as separate processes works in: its own database, subject prefix and
 * instance id (on every container and volume), and a driver to look at the engine with.
 */
export interface ProcessTestBed {
  instanceId: string;
  /** A key of the tenant "test", and the services' key they share (TEE_SERVICE_KEY). */
  apiKey: string;
  serviceKey: string;
  /** A client of the tenant "test" on a service of the bed; `operator` uses the services' key. */
  client(url: string, operator?: boolean): AssistTeeClient;
  subjectPrefix: string;
  natsUrl: string;
  databaseUrl: string;
  sandbox: SandboxDriver;
  /** The environment every service of this bed starts with. */
  env: Record<string, string>;
  /** Starts a service with the bed's environment plus `env`; tearDown stops it. */
  start(name: string, env?: Record<string, string>): Promise<ServiceProcess>;
  /** SIGTERMs what still runs, removes what carries the instance id, drops the rest. */
  tearDown(): Promise<void>;
}

/**
 * A bed on the shared Postgres and NATS, or on servers of the test's own (`database`, `natsUrl`)
 * that it means to stop and start.
 */
export async function startProcessTestBed(
  options: { database?: { url: string }; natsUrl?: string } = {},
): Promise<ProcessTestBed> {
  const natsUrl = options.natsUrl ?? SHARED_NATS_URL;
  const ownDatabase = options.database === undefined ? await createTestDatabase() : undefined;
  const databaseUrl = options.database?.url ?? ownDatabase!.url;
  const instanceId = `test-${uniqueSuffix()}`;
  const subjectPrefix = testSubjectPrefix();
  const sandbox = new SandboxDriver({
    docker: createDockerClient({ socketPath: '/var/run/docker.sock' }),
    logger: createLogger({ level: 'silent' }),
    runtime: 'runsc',
    networkRuntime: 'runsc-net',
  });
  const serviceKey = `tee_service_test_${uniqueSuffix()}`;
  const apiKeys = await openApiKeys({
    databaseUrl,
    serviceKey,
    logger: createLogger({ level: 'silent' }),
  });
  const { key: apiKey } = await apiKeys.create('test', 'the process test bed');
  await apiKeys.close();
  const env = {
    TEE_DATABASE_URL: databaseUrl,
    TEE_SERVICE_KEY: serviceKey,
    TEE_NATS_URL: natsUrl,
    TEE_SUBJECT_PREFIX: subjectPrefix,
    TEE_INSTANCE_ID: instanceId,
    // These tests find an execution's sandbox by its execution-id label, which only a cold
    // sandbox carries; warm-pool.test.ts turns the pool on.
    TEE_POOL_MAX_PER_ENVIRONMENT: '0',
  };
  const started: ServiceProcess[] = [];
  return {
    instanceId,
    apiKey,
    serviceKey,
    // No automatic retry: these tests stop and kill processes and assert what a call then sees.
    client: (url, operator = false) =>
      createAssistTeeClient({ baseUrl: url, apiKey: operator ? serviceKey : apiKey, retry: false }),
    subjectPrefix,
    natsUrl,
    databaseUrl,
    sandbox,
    env,
    async start(name, extra = {}) {
      const service = await startService(name, { ...env, ...extra });
      started.push(service);
      return service;
    },
    async tearDown() {
      for (const service of started.reverse()) await stopService(service);
      await removeLabelled(sandbox, { instanceId });
      await deleteTestStream(natsUrl, `${subjectPrefix.toUpperCase()}_EVENTS`).catch(() => {
        // A test that stops its own NATS may have failed with it down.
      });
      await ownDatabase?.drop();
    },
  };
}

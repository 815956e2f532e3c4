// What bench/bench.mjs and bench/fresh-cost.mjs share: the standalone stack on a free port, a
// Connect JSON call, the README's handler, one Execute, the naive `docker run` baseline and a
// throughput loop.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { bunRuntime } from '@assist-tee/runtime-bun';
import { encodeRun } from '@assist-tee/runtime-core';
import { denoRuntime } from '@assist-tee/runtime-deno';
import { environmentVolumeName, SANDBOX_ID } from '@assist-tee/sandbox';

export const root = new URL('..', import.meta.url).pathname;

// The README's example: main.ts imports ./utils.ts and returns the sum.
export const MODULES = {
  'main.ts':
    'import { add } from "./utils.ts";\n\nexport function handler(event: { data: { a: number; b: number } }) {\n  console.log("adding", event.data.a, event.data.b);\n  return { sum: add(event.data.a, event.data.b) };\n}\n',
  'utils.ts': 'export const add = (a: number, b: number): number => a + b;\n',
};

/** The runtimes by the name the API gives them. */
export const RUNTIMES = { RUNTIME_DENO: denoRuntime, RUNTIME_BUN: bunRuntime };

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
export const round = (value) => Math.round(value * 10) / 10;

export async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The standalone process on a free port; resolves once it serves. `pid` is its process id. */
export async function startStack(env) {
  const port = await freePort();
  const child = spawn(process.execPath, [`${root}services/standalone/dist/main.js`], {
    env: {
      ...process.env,
      TEE_PORT: String(port),
      TEE_EGRESS_PROXY_PORT: '0',
      TEE_INSTANCE_ID: `bench-${randomBytes(3).toString('hex')}`,
      TEE_LOG_LEVEL: process.env.TEE_LOG_LEVEL ?? 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  createInterface({ input: child.stdout }).on('line', () => {});
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`the stack exited with ${child.exitCode}`);
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (i > 600) throw new Error('the stack did not start');
    await sleep(100);
  }
  return {
    url,
    pid: child.pid,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

/**
 * One Connect JSON call over HTTP, the way any client in any language makes it. `method` is its
 * full name, e.g. `assist_tee.v1.ExecutionService/Execute`.
 */
export async function call(url, method, body, key) {
  const response = await fetch(`${url}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method}: ${JSON.stringify(json)}`);
  return json;
}

/** An environment with the README's handler; returns its id. */
export const createEnvironment = async (url, key, runtime = 'RUNTIME_DENO') =>
  (
    await call(
      url,
      'assist_tee.v1.EnvironmentService/CreateEnvironment',
      { runtime, mainModule: 'main.ts', modules: MODULES },
      key,
    )
  ).environment.id;

/**
 * One Execute of the README's handler, in a fresh sandbox (`{ environmentId }`) or a session
 * (`{ sessionId }`); throws unless it returned the sum.
 */
export async function executeIn(url, key, target, i = 0) {
  const started = performance.now();
  const { execution } = await call(
    url,
    'assist_tee.v1.ExecutionService/Execute',
    { ...target, data: { a: 2, b: i } },
    key,
  );
  const ms = performance.now() - started;
  if (execution.status !== 'EXECUTION_STATUS_SUCCEEDED' || execution.result.sum !== 2 + i) {
    throw new Error(`unexpected execution: ${JSON.stringify(execution)}`);
  }
  return { ms, warm: execution.warm === true, coldStartReason: execution.coldStartReason };
}

/** One Execute of the README's handler in a fresh sandbox. */
export const execute = (url, key, environmentId, i = 0) =>
  executeIn(url, key, { environmentId }, i);

/** The naive baseline: one `docker run --rm -i --runtime=runsc` per event. */
export function naiveRun(environmentId, i = 0, runtimeName = 'RUNTIME_DENO') {
  const runtime = RUNTIMES[runtimeName];
  const run = { mainModule: 'main.ts', allowNet: [], dependencies: false };
  const args = [
    'run',
    '--rm',
    '-i',
    '--runtime=runsc',
    '--network=none',
    '--read-only',
    '--memory=256m',
    `--user=${SANDBOX_ID}:${SANDBOX_ID}`,
    '-v',
    `${environmentVolumeName(environmentId)}:${runtime.codeDir}:ro`,
    ...runtime.env(run).flatMap((e) => ['-e', e]),
    runtime.image,
    ...runtime.command(run),
  ];
  const nonce = randomBytes(16).toString('hex');
  // One run, then stdin closes and the runner exits.
  const message = encodeRun({
    type: 'run',
    id: 1,
    kind: 'handler',
    data: { a: 2, b: i },
    env: {},
    context: { executionId: 'naive', environmentId, sessionId: '', timeoutMs: 10000 },
  });
  const started = performance.now();
  return new Promise((resolve, reject) => {
    // stderr carries the runner's mark after the result (and docker's own errors).
    const child = spawn('docker', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    child.stdin.end(`${nonce}\n${message}`);
    child.on('exit', (code) => {
      const ms = performance.now() - started;
      const result = out.split('\n').find((line) => line.startsWith(`${nonce} {"type":"result"`));
      if (code !== 0 || !result || JSON.parse(result.slice(33)).value.sum !== 2 + i) {
        reject(new Error(`naive run failed (exit ${code}): ${out}${err}`));
      } else resolve({ ms });
    });
  });
}

/** Executions per second with `concurrency` callers, `total` calls in all. */
export async function throughput(run, concurrency, total) {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await run(next++);
    }),
  );
  return round((total * 1000) / (performance.now() - started));
}

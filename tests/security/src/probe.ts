import { type Execution, type Runtime } from '@assist-tee/client';
import type { StackWithClient } from '@assist-tee/e2e';
import { fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';

/**
 * Available to every probe: `attempt(f)` answers `{ ok: value }`, or `{ error: code }` with the
 * error's code (ENOENT, …), else its name (NotCapable, PermissionDenied, …).
 */
const PRELUDE = `
import * as fs from 'node:fs';
import * as net from 'node:net';
const attempt = async (f: () => unknown) => {
  try {
    return { ok: await f() };
  } catch (e: any) {
    return { error: String(e?.code ?? e?.name ?? e) };
  }
};
const connect = (options: net.NetConnectOpts) =>
  new Promise<string>((resolve, reject) => {
    const socket = net.connect(options);
    socket.setTimeout(3000, () => reject(Object.assign(new Error('timed out'), { code: 'timeout' })));
    socket.on('connect', () => { socket.destroy(); resolve('connected'); });
    socket.on('error', reject);
  });
`;

export interface ProbeOptions {
  data?: JsonValue;
  /** Extra modules next to main.ts. */
  modules?: Record<string, string>;
  allowEnv?: string[];
  allowNet?: string[];
  env?: Record<string, string>;
  limits?: { timeoutMs?: number; memoryMb?: number; maxOutputBytes?: number };
}

export interface ProbeRun {
  execution: Execution;
  /** What the handler returned, as JSON. */
  value: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/**
 * Hostile handler code through the public API: a fresh environment whose handler body is
 * `body` (it sees `event`, `context`, `fs`, `net`, `attempt` and `connect`), one execution,
 * then the environment is deleted.
 */
export async function probe(
  tee: StackWithClient,
  runtime: Runtime,
  body: string,
  options: ProbeOptions = {},
): Promise<ProbeRun> {
  const { environment } = await tee.client.environments.createEnvironment({
    runtime,
    mainModule: 'main.ts',
    modules: {
      ...options.modules,
      'main.ts': `${PRELUDE}\nexport async function handler(event: any, context: any) {\n${body}\n}\n`,
    },
    permissions: { allowEnv: options.allowEnv ?? [], allowNet: options.allowNet ?? [] },
  });
  try {
    const { execution } = await tee.client.executions.execute({
      environmentId: environment!.id,
      data: fromJson(ValueSchema, options.data ?? null),
      env: options.env ?? {},
      limits: {
        timeoutMs: options.limits?.timeoutMs ?? 0,
        memoryMb: options.limits?.memoryMb ?? 0,
        maxOutputBytes: BigInt(options.limits?.maxOutputBytes ?? 0),
      },
    });
    const value = execution!.result === undefined ? null : toJson(ValueSchema, execution!.result);
    return { execution: execution!, value };
  } finally {
    await tee.client.environments.deleteEnvironment({ id: environment!.id });
  }
}

import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { fromJson, type JsonObject, toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { handlerModules, NAMED_RUNTIMES, sumExample, useTestStack } from '../src/index.js';

const LIMIT_STATUSES = [
  ExecutionStatus.PROCESS_LIMIT,
  ExecutionStatus.OOM,
  ExecutionStatus.TIMEOUT,
];

describe('limits, env and output escaping', () => {
  const tee = useTestStack();

  async function run(
    runtime: Runtime,
    body: string,
    request: { env?: Record<string, string>; allowEnv?: string[]; memoryMb?: number } = {},
  ) {
    const { environment } = await tee.client.environments.createEnvironment({
      ...handlerModules(body),
      runtime,
      permissions: { allowEnv: request.allowEnv ?? [] },
    });
    const { execution } = await tee.client.executions.execute({
      environmentId: environment!.id,
      env: request.env ?? {},
      limits: { timeoutMs: 20_000, memoryMb: request.memoryMb ?? 0 },
    });
    await tee.client.environments.deleteEnvironment({ id: environment!.id });
    return execution!;
  }

  // Bun can spawn processes (it has no permission model); the PID limit stops the bomb.
  it('ends a Bun fork bomb as PROCESS_LIMIT, and the next execution runs normally', async () => {
    const execution = await run(
      Runtime.BUN,
      `const children = [];
       for (let i = 0; i < 10000; i++) {
         children.push(Bun.spawn([process.execPath, "-e", "setInterval(() => {}, 1000)"]));
         await Bun.sleep(5);
       }
       return children.length;`,
    );
    expect(execution.status).toBe(ExecutionStatus.PROCESS_LIMIT);
    expect(execution.error?.name).toBe('ProcessLimit');
    const { environment } = await tee.client.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.BUN,
    });
    const { execution: next } = await tee.client.executions.execute({
      environmentId: environment!.id,
      data: fromJson(ValueSchema, { a: 1, b: 2 }),
    });
    expect(next!.status).toBe(ExecutionStatus.SUCCEEDED);
    await tee.client.environments.deleteEnvironment({ id: environment!.id });
  });

  // Deno cannot spawn processes here (no --allow-run); a thread bomb is its closest relative.
  it('ends a Deno worker bomb with a limit status, not SANDBOX_ERROR', async () => {
    const execution = await run(
      Runtime.DENO,
      `const source = URL.createObjectURL(new Blob(["setInterval(() => {}, 1000)"]));
       const workers = [];
       for (let i = 0; i < 10000; i++) {
         workers.push(new Worker(source, { type: "module" }));
         await new Promise((resolve) => setTimeout(resolve, 1));
       }
       return workers.length;`,
      { memoryMb: 256 },
    );
    expect(LIMIT_STATUSES).toContain(execution.status);
  });

  describe.each(NAMED_RUNTIMES)('on %s', (_, runtime) => {
    it('passes allowed env to event.env and the process environment, and nothing of the host', async () => {
      const execution = await run(
        runtime,
        `const g = globalThis as any;
         const environment = g.Deno ? g.Deno.env.toObject() : { ...process.env };
         return { fromEvent: event.env, greeting: environment.GREETING, names: Object.keys(environment) };`,
        { env: { GREETING: 'hello' }, allowEnv: ['GREETING', 'UNUSED'] },
      );
      expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
      const result = toJson(ValueSchema, execution.result!) as JsonObject;
      expect(result.fromEvent).toEqual({ GREETING: 'hello' });
      expect(result.greeting).toBe('hello');
      const names = (result.names as string[]).join(' ');
      for (const leaked of ['TEE_', 'DATABASE', 'NATS', 'SSL_CERT', 'NODE_EXTRA', 'PROXY']) {
        expect(names).not.toContain(leaked);
      }
    });

    it('returns invalid UTF-8, NUL and ANSI escapes in logs escaped', async () => {
      const execution = await run(
        runtime,
        `const g = globalThis as any;
         const bytes = new Uint8Array([0x61, 0xff, 0x1b, 0x5b, 0x33, 0x31, 0x6d, 0x00, 0x62, 0x0a]);
         if (g.Deno) g.Deno.stdout.writeSync(bytes); else (await import('node:fs')).writeSync(1, bytes);
         console.log("\\x1b[2Jcleared\\r");
         return "done";`,
      );
      expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
      const messages = execution.logs.map((line) => line.message);
      expect(messages).toContain('a\\xff\\x1b[31m\\x00b');
      expect(messages).toContain('\\x1b[2Jcleared\\x0d');
    });
  });
});

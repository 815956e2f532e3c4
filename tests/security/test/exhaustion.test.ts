import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { NAMED_RUNTIMES, sumExample, useTestStack } from '@assist-tee/e2e';
import { expectNothingLabelled } from '@assist-tee/testing';
import { fromJson, toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { probe } from '../src/index.js';

const MiB = 1024 * 1024;

describe('exhaustion', () => {
  const tee = useTestStack();
  const nothingLeftOf = (environmentId: string) =>
    expectNothingLabelled(tee.stack.process.infrastructure.sandbox, { environmentId });

  describe.each(NAMED_RUNTIMES)('on %s', (_, runtime) => {
    const deno = runtime === Runtime.DENO;

    describe.concurrent('probes', () => {
      it('an endless loop and a sleep past the timeout end as TIMEOUT', async () => {
        for (const body of [
          'while (true) {}',
          'await new Promise((r) => setTimeout(r, 60_000));',
        ]) {
          const { execution } = await probe(tee, runtime, body, { limits: { timeoutMs: 1000 } });
          expect(execution.status).toBe(ExecutionStatus.TIMEOUT);
          await nothingLeftOf(execution.environmentId);
        }
      });

      it('timers left running after the handler returns die with its sandbox', async () => {
        const { execution, value } = await probe(
          tee,
          runtime,
          "setInterval(() => console.log('tick'), 1); setTimeout(() => {}, 1e9); return 'done';",
        );
        expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
        expect(value).toBe('done');
        await nothingLeftOf(execution.environmentId);
      });

      it('a memory bomb ends as OOM', async () => {
        const { execution } = await probe(
          tee,
          runtime,
          'const hog = []; while (true) hog.push(new Uint8Array(8 * 1024 * 1024).fill(1));',
          { limits: { memoryMb: 128 } },
        );
        expect(execution.status).toBe(ExecutionStatus.OOM);
      });

      // Threads for Deno (workers), processes for Bun: whichever limit comes first ends it.
      it('a fork or thread bomb ends at the process or the memory limit', async () => {
        const { execution } = await probe(
          tee,
          runtime,
          deno
            ? `for (;;) { new Worker('data:text/javascript,setInterval(() => {}, 1000)', { type: 'module' }); await new Promise((r) => setTimeout(r, 1)); }`
            : `const cp = await import('node:child_process');
               for (;;) { cp.spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']); await new Promise((r) => setTimeout(r, 1)); }`,
          { limits: { timeoutMs: 30_000 } },
        );
        expect([ExecutionStatus.PROCESS_LIMIT, ExecutionStatus.OOM]).toContain(execution.status);
        await nothingLeftOf(execution.environmentId);
      });

      it('/tmp and /dev/shm fill up to their caps and no further', async () => {
        const { execution, value } = await probe(
          tee,
          runtime,
          `const fill = (dir: string) => attempt(() => {
             const chunk = new Uint8Array(1024 * 1024).fill(7);
             let written = 0;
             try { for (;;) { fs.appendFileSync(dir + '/fill', chunk); written += chunk.length; } }
             catch (e: any) { return { written, code: e.code ?? e.name }; }
           });
           return { tmp: await fill('/tmp'), shm: await fill('/dev/shm') };`,
        );
        expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
        // TEE_TMPFS_MB (64) on both; Deno may write nothing else (not even /dev/shm, 1 MiB).
        expect(value.tmp.ok.code).toBe('ENOSPC');
        expect(value.tmp.ok.written).toBeGreaterThanOrEqual(60 * MiB);
        expect(value.tmp.ok.written).toBeLessThanOrEqual(64 * MiB);
        expect(value.shm.ok).toEqual(
          deno ? { written: 0, code: 'NotCapable' } : { written: MiB, code: 'ENOSPC' },
        );
      });

      it('an output flood and one huge log line stop at max_output_bytes', async () => {
        for (const body of [
          "for (;;) console.log('x'.repeat(1000));",
          "console.log('y'.repeat(5_000_000)); return 'unreachable';",
        ]) {
          const { execution } = await probe(tee, runtime, body, {
            limits: { maxOutputBytes: MiB },
          });
          expect(execution.status).toBe(ExecutionStatus.OUTPUT_LIMIT);
          expect(execution.outputTruncated).toBe(true);
          const logged = execution.logs.reduce((sum, line) => sum + line.message.length, 0);
          expect(logged).toBeLessThanOrEqual(2 * MiB);
        }
      });

      it('NUL bytes and invalid UTF-8 come back escaped in logs and intact in the result', async () => {
        const { execution, value } = await probe(
          tee,
          runtime,
          `console.log('nul[\\u0000] esc[\\u001b[31m]');
           process.stdout.write(new Uint8Array([0x62, 0x61, 0x64, 0xff, 0xfe, 0x0a]));
           return { nul: 'a\\u0000b', text: 'ok' };`,
        );
        expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
        expect(value).toEqual({ nul: 'a\u0000b', text: 'ok' });
        const logs = execution.logs.map((line) => line.message);
        expect(logs).toContain('nul[\\x00] esc[\\x1b[31m]');
        expect(logs).toContain('bad\\xff\\xfe');
      });

      it('20 executions at once on one environment each get their own sandbox', async () => {
        const { environment } = await tee.client.environments.createEnvironment({
          ...sumExample,
          runtime,
        });
        try {
          const runs = await Promise.all(
            Array.from({ length: 20 }, (_, b) =>
              tee.client.executions.execute({
                environmentId: environment!.id,
                data: fromJson(ValueSchema, { a: 1000, b }),
              }),
            ),
          );
          expect(runs.map(({ execution }) => execution?.status)).toEqual(
            Array(20).fill(ExecutionStatus.SUCCEEDED),
          );
          expect(runs.map(({ execution }) => toJson(ValueSchema, execution!.result!))).toEqual(
            Array.from({ length: 20 }, (_, b) => ({ sum: 1000 + b })),
          );
        } finally {
          await tee.client.environments.deleteEnvironment({ id: environment!.id });
        }
        await nothingLeftOf(environment!.id);
      });
    });

    it('afterwards, another environment runs as usual', async () => {
      const { environment } = await tee.client.environments.createEnvironment({
        ...sumExample,
        runtime,
      });
      const { execution } = await tee.client.executions.execute({
        environmentId: environment!.id,
        data: fromJson(ValueSchema, { a: 2, b: 3 }),
      });
      expect(execution?.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(toJson(ValueSchema, execution!.result!)).toEqual({ sum: 5 });
      await tee.client.environments.deleteEnvironment({ id: environment!.id });
    });
  });
});

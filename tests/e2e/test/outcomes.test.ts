import { type Execution, ExecutionStatus } from '@assist-tee/client';
import { fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { expectNothingLabelled } from '@assist-tee/testing';
import { describe, expect, it } from 'vitest';
import { handlerModules, NAMED_RUNTIMES, useTestStack } from '../src/index.js';

// A handler's outcome is data, not an RPC error: each of these is a normal response, and the
// same one whichever runtime the handler runs on.
describe('execution outcomes', () => {
  const tee = useTestStack();

  describe.each(NAMED_RUNTIMES)('on %s', (_, runtime) => {
    async function run(
      body: string,
      options: {
        data?: JsonValue;
        timeoutMs?: number;
        memoryMb?: number;
        maxOutputBytes?: number;
      } = {},
    ) {
      const { environment } = await tee.client.environments.createEnvironment({
        ...handlerModules(body),
        runtime,
      });
      const started = Date.now();
      const { execution } = await tee.client.executions.execute({
        environmentId: environment!.id,
        data: fromJson(ValueSchema, options.data ?? null),
        limits: {
          timeoutMs: options.timeoutMs ?? 0,
          memoryMb: options.memoryMb ?? 0,
          maxOutputBytes: BigInt(options.maxOutputBytes ?? 0),
        },
      });
      const elapsedMs = Date.now() - started;
      await tee.client.environments.deleteEnvironment({ id: environment!.id });
      return { execution: execution!, elapsedMs };
    }

    // Timed from the handler's first log line, streamed as it is written: the sandbox's start
    // (seconds on a busy machine) is not part of the deadline.
    it('kills an endless loop at its timeout, answering within timeout + 2 s of its start', async () => {
      const { environment } = await tee.client.environments.createEnvironment({
        ...handlerModules("console.log('looping'); while (true) {}"),
        runtime,
      });
      let loopingAt: number | undefined;
      let execution: Execution | undefined;
      for await (const { event } of tee.client.executions.executeStream({
        environmentId: environment!.id,
        limits: { timeoutMs: 1000 },
      })) {
        if (event.case === 'log' && event.value.message === 'looping') loopingAt ??= Date.now();
        if (event.case === 'execution') execution = event.value;
      }
      const answeredAt = Date.now();
      await tee.client.environments.deleteEnvironment({ id: environment!.id });
      expect(execution?.status).toBe(ExecutionStatus.TIMEOUT);
      expect(execution?.error?.message).toContain('1000 ms');
      expect(loopingAt).toBeDefined();
      expect(answeredAt - loopingAt!).toBeLessThan(3000);
      const { sandbox } = tee.stack.process.infrastructure;
      await expectNothingLabelled(sandbox, { environmentId: environment!.id });
    });

    describe.concurrent('one sandbox each', () => {
      it('returns the handler error of a throwing handler', async () => {
        const { execution } = await run("throw new TypeError('bad input: ' + event.data.x);", {
          data: { x: 42 },
        });
        expect(execution.status).toBe(ExecutionStatus.HANDLER_ERROR);
        expect(execution.error).toMatchObject({ name: 'TypeError', message: 'bad input: 42' });
        expect(execution.error?.stack).toContain('main.ts');
      });

      it('reports a memory bomb as OOM', async () => {
        const { execution } = await run(
          'const hog = []; while (true) hog.push(new Uint8Array(8 * 1024 * 1024).fill(1));',
          { memoryMb: 128 },
        );
        expect(execution.status).toBe(ExecutionStatus.OOM);
        // 137 when the kernel kills the handler's process, 2 when it picks one of runsc's own
        // (the sandbox dies whole; Docker reports the OOM kill either way).
        expect([2, 137]).toContain(execution.exitCode);
      });

      // V8 hits its own heap limit first there (exit 133); JavaScriptCore runs into the cgroup's.
      // Filling 512 MiB through gVisor's page faults can take over 10 s on a busy machine: the
      // timeout is generous so that only the memory limit can end it.
      it('reports a JS-heap bomb under a large memory_mb as OOM too', async () => {
        const { execution } = await run(
          'const hog = []; while (true) hog.push(new Array(1024 * 1024).fill({}));',
          { memoryMb: 512, timeoutMs: 50_000 },
        );
        expect(execution.status).toBe(ExecutionStatus.OOM);
      });

      it('stops an output flood at max_output_bytes, keeping the first lines', async () => {
        const { execution } = await run(
          "for (let i = 0; ; i++) console.log('line ' + i + ' ' + 'x'.repeat(100));",
          { maxOutputBytes: 64 * 1024 },
        );
        expect(execution.status).toBe(ExecutionStatus.OUTPUT_LIMIT);
        expect(execution.outputTruncated).toBe(true);
        expect(execution.logs[0]?.message).toBe(`line 0 ${'x'.repeat(100)}`);
        const kept = execution.logs.reduce((sum, log) => sum + log.message.length, 0);
        expect(kept).toBeGreaterThan(0);
        expect(kept).toBeLessThanOrEqual(64 * 1024);
        const { sandbox } = tee.stack.process.infrastructure;
        await expectNothingLabelled(sandbox, { environmentId: execution.environmentId });
      });

      it('keeps the result intact through console noise and forged frames', async () => {
        const { execution } = await run(`
        console.log('plain', [1, 2]);
        console.warn('a warning\\nspanning lines');
        console.error('{"type":"result","ok":true,"value":"forged"}');
        await new Promise((resolve) => process.stdout.write('{"type":"result","ok":true,"value":"raw"}\\n', resolve));
        return { answer: 42, text: 'ünïcödé' };
      `);
        expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
        expect(toJson(ValueSchema, execution.result!)).toEqual({ answer: 42, text: 'ünïcödé' });
        const messages = execution.logs.map((log) => log.message);
        expect(messages).toEqual([
          'plain [ 1, 2 ]',
          'a warning\nspanning lines',
          '{"type":"result","ok":true,"value":"forged"}',
          '{"type":"result","ok":true,"value":"raw"}',
        ]);
      });

      it('gives a handler that never asked for network none', async () => {
        const { execution } = await run(`
        try {
          await fetch('https://registry.npmjs.org/');
          return 'reached the network';
        } catch (error) {
          return 'no network: ' + error.name;
        }
      `);
        expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
        expect(toJson(ValueSchema, execution.result!)).toMatch(/^no network: /);
      });

      it('returns null and non-object results as JSON values', async () => {
        const results = await Promise.all([
          run('return null;'),
          run("return 'text';"),
          run('return [1, 2];'),
        ]);
        expect(results.map(({ execution }) => toJson(ValueSchema, execution.result!))).toEqual([
          null,
          'text',
          [1, 2],
        ]);
      });
    });
  });
});

import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { useTestStack } from '@assist-tee/e2e';
import { describe, expect, it } from 'vitest';
import { probe } from '../src/index.js';

const GVISOR_KERNEL = 'Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016';

// Process and native escape routes. Deno refuses them by permission (no --allow-run,
// --allow-ffi or --allow-write); Bun has none to refuse with, so there the probes show that
// what runs stays in gVisor, as uid 1000, without capabilities, and finds no shell.
describe('processes and native code', () => {
  const tee = useTestStack();

  describe.concurrent('on DENO', () => {
    const deno = (body: string) => probe(tee, Runtime.DENO, body);

    it('Deno.Command, FFI and /proc/self/mem are refused', async () => {
      const { execution, value } = await deno(`return {
        command: await attempt(async () => (await new Deno.Command('/usr/bin/deno', { args: ['--version'] }).output()).code),
        dlopen: await attempt(() => Deno.dlopen('libc.so.6', { getuid: { parameters: [], result: 'u32' } }).symbols.getuid()),
        mem: await attempt(() => fs.openSync('/proc/self/mem', 'r+')),
      };`);
      expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(value).toEqual({
        command: { error: 'NotCapable' },
        dlopen: { error: 'NotCapable' },
        mem: { error: 'NotCapable' },
      });
    });

    it('a worker inherits the handler’s permissions and no more', async () => {
      const { execution, value } =
        await deno(`return attempt(() => new Promise((resolve, reject) => {
        const worker = new Worker('data:text/javascript,postMessage(Deno.readTextFileSync("/etc/passwd"))', { type: 'module' });
        worker.onmessage = (message) => { worker.terminate(); resolve(message.data); };
        worker.onerror = (e) => { e.preventDefault(); reject(new Error(e.message)); };
      }));`);
      expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(value).toEqual({ error: 'Error' });
      expect(execution.logs.map((line) => line.message).join('\n')).toContain(
        'NotCapable: Requires read access to "/etc/passwd"',
      );
    });

    it('a worker that asks for more permissions ends only its own sandbox', async () => {
      const { execution } = await deno(`
        new Worker('data:text/javascript,postMessage(1)', {
          type: 'module', deno: { permissions: { read: true, run: true, net: true, ffi: true } },
        } as any);
        await new Promise((resolve) => setTimeout(resolve, 5000));`);
      expect(execution.status).toBe(ExecutionStatus.HANDLER_ERROR);
      expect(execution.error?.name).toBe('ProcessExited');
      expect(execution.logs.map((line) => line.message).join('\n')).toContain(
        "Unstable API 'Worker.deno.permissions'",
      );
    });
  });

  describe.concurrent('on BUN', () => {
    const bun = (body: string) => probe(tee, Runtime.BUN, body);

    it('there is no shell to run', async () => {
      const { execution, value } = await bun(`const cp = await import('node:child_process');
        return {
          execSync: await attempt(() => cp.execSync('id').toString()),
          bunSpawn: await attempt(() => Bun.spawnSync(['/bin/sh', '-c', 'id']).exitCode),
        };`);
      expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(value).toEqual({ execSync: { error: 'ENOENT' }, bunSpawn: { error: 'ENOENT' } });
    });

    it('a child process of its own binary stays in the sandbox, as uid 1000', async () => {
      const { execution, value } = await bun(`const cp = await import('node:child_process');
        const child = cp.spawnSync(process.execPath, ['-e',
          'const fs = require("fs"); console.log(JSON.stringify([fs.readFileSync("/proc/version", "utf8").trim(), process.getuid(), fs.readdirSync("/").sort()]))']);
        return JSON.parse(child.stdout.toString());`);
      expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(value).toEqual([
        GVISOR_KERNEL,
        1000,
        ['.dockerenv', 'code', 'dev', 'etc', 'lib', 'lib64', 'proc', 'runner', 'sys', 'tmp', 'usr'],
      ]);
    });

    it('native code through bun:ffi runs as uid 1000 and cannot become root', async () => {
      const { execution, value } = await bun(`const { dlopen } = await import('bun:ffi');
        const libc = dlopen('libc.so.6', {
          getuid: { args: [], returns: 'u32' },
          setuid: { args: ['u32'], returns: 'i32' },
        });
        return { uid: libc.symbols.getuid(), setuid: libc.symbols.setuid(0), after: libc.symbols.getuid() };`);
      expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(value).toEqual({ uid: 1000, setuid: -1, after: 1000 });
    });

    it('/proc/self/mem cannot be opened for writing', async () => {
      const { execution, value } = await bun(
        "return attempt(() => fs.openSync('/proc/self/mem', 'r+'));",
      );
      expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(value).toEqual({ error: 'EACCES' });
    });
  });
});

import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { NAMED_RUNTIMES, useTestStack } from '@assist-tee/e2e';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { probe } from '../src/index.js';

// A secret in the service's own environment (the stack runs in this process): no probe may
// find it anywhere.
const CANARY = `canary-${randomBytes(8).toString('hex')}`;
process.env.TEE_SECURITY_CANARY = CANARY;
/** gVisor's user-space kernel names itself so; the host's kernel is 6.x. */
const GVISOR_KERNEL = 'Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016';
const SERVICE_TRACES = /TEE_|postgres|nats:|dockerd|containerd|assist_tee/i;

describe('secrets and reconnaissance', () => {
  const tee = useTestStack();

  describe.each(NAMED_RUNTIMES)('on %s', (_, runtime) => {
    // Deno gets --allow-read for /code and /runner only: everything else is NotCapable. Bun has
    // no permission system: what it meets is gVisor and the container rules.
    const deno = runtime === Runtime.DENO;
    const unlessDeno = (bun: unknown) => (deno ? { error: 'NotCapable' } : bun);

    describe.concurrent('probes', () => {
      it('the process environment holds only what the sandbox was given', async () => {
        const { execution, value } = await probe(tee, runtime, 'return process.env;', {
          allowEnv: ['GREETING'],
          env: { GREETING: 'hello' },
        });
        expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
        expect(value.GREETING).toBe('hello');
        expect(value.HOSTNAME).toBe('sandbox');
        expect(JSON.stringify(value)).not.toContain(CANARY);
        expect(JSON.stringify(value)).not.toMatch(SERVICE_TRACES);
      });

      it('/proc/self/environ', async () => {
        const { value } = await probe(
          tee,
          runtime,
          "return attempt(() => fs.readFileSync('/proc/self/environ', 'utf8'));",
        );
        expect(value).toEqual(unlessDeno({ ok: expect.stringContaining('HOSTNAME=sandbox') }));
        expect(JSON.stringify(value)).not.toContain(CANARY);
        expect(JSON.stringify(value)).not.toMatch(SERVICE_TRACES);
      });

      it('/proc/*/environ and cmdline: only the sandbox’s own processes', async () => {
        const { value } = await probe(
          tee,
          runtime,
          `return attempt(() => fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n)).map((pid) =>
             fs.readFileSync('/proc/' + pid + '/cmdline', 'utf8') + ' ' +
             fs.readFileSync('/proc/' + pid + '/environ', 'utf8')));`,
        );
        expect(value).toEqual(unlessDeno({ ok: [expect.stringContaining('/runner/runner.ts')] }));
        expect(JSON.stringify(value)).not.toContain(CANARY);
        expect(JSON.stringify(value)).not.toMatch(SERVICE_TRACES);
      });

      it('host files, the Docker socket and the root directory', async () => {
        const { value } = await probe(
          tee,
          runtime,
          `const out: Record<string, unknown> = {};
           for (const p of ['/etc/shadow', '/root', '/home', '/var/run/docker.sock', '/run/docker.sock',
                            '/var/lib/docker', '/var/lib/postgresql', '/etc/hostname', '/'])
             out[p] = await attempt(() => fs.statSync(p).isDirectory() ? fs.readdirSync(p).sort() : fs.readFileSync(p, 'utf8'));
           out.socket = await attempt(() => connect({ path: '/var/run/docker.sock' }));
           return out;`,
        );
        const missing = unlessDeno({ error: 'ENOENT' });
        expect(value).toEqual({
          '/etc/shadow': missing,
          '/root': missing,
          '/home': missing,
          '/var/run/docker.sock': missing,
          '/run/docker.sock': missing,
          '/var/lib/docker': missing,
          '/var/lib/postgresql': missing,
          '/etc/hostname': unlessDeno({ ok: 'sandbox\n' }),
          // The image is FROM scratch: the runtime, its libraries and the runner; no shell.
          '/': unlessDeno({
            ok: [
              '.dockerenv',
              'code',
              'dev',
              'etc',
              'lib',
              'lib64',
              'proc',
              'runner',
              'sys',
              'tmp',
              'usr',
            ],
          }),
          socket: missing,
        });
      });

      it('mounts, devices, capabilities and the kernel', async () => {
        const { value } = await probe(
          tee,
          runtime,
          `return {
            mounts: await attempt(() => fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\\n')
              .map((line) => line.split(' ').slice(4, 6).join(' ')).sort()),
            devices: await attempt(() => fs.readdirSync('/dev').sort()),
            status: await attempt(() => Object.fromEntries(fs.readFileSync('/proc/self/status', 'utf8').trim()
              .split('\\n').map((line) => line.split(':\\t')))),
            kernel: await attempt(() => fs.readFileSync('/proc/version', 'utf8').trim()),
            shell: await attempt(() => fs.statSync('/bin/sh').size),
          };`,
        );
        if (deno) {
          for (const probed of Object.values(value as Record<string, unknown>))
            expect(probed).toEqual({ error: 'NotCapable' });
          return;
        }
        // Only the sandbox's own mounts, the code read-only, no socket or host path.
        expect(value.mounts.ok).toEqual([
          '/ ro',
          '/code ro',
          '/dev rw',
          '/dev/pts rw,noexec',
          '/dev/shm rw,noexec',
          '/etc/hostname ro',
          '/proc rw,noexec',
          '/sys ro,noexec',
          '/tmp rw,noexec',
        ]);
        // gVisor's own device files; no disk, memory or KVM device of the host.
        expect(value.devices.ok).toEqual([
          'fd',
          'full',
          'fuse',
          'net',
          'null',
          'ptmx',
          'pts',
          'random',
          'shm',
          'stderr',
          'stdin',
          'stdout',
          'tty',
          'urandom',
          'zero',
        ]);
        expect(value.status.ok).toMatchObject({
          Uid: '1000\t1000\t1000\t1000',
          CapInh: '0000000000000000',
          CapPrm: '0000000000000000',
          CapEff: '0000000000000000',
          CapBnd: '0000000000000000',
        });
        expect(value.kernel).toEqual({ ok: GVISOR_KERNEL });
        expect(value.shell).toEqual({ error: 'ENOENT' });
      });

      it('another environment’s code is nowhere to be found', async () => {
        const secret = `secret-${randomBytes(6).toString('hex')}`;
        const own = `own-${randomBytes(6).toString('hex')}`;
        const { environment: other } = await tee.client.environments.createEnvironment({
          runtime,
          mainModule: 'main.ts',
          modules: { 'main.ts': `export const handler = () => '${secret}';` },
        });
        try {
          // Every file this runtime may read, searched for the other environment's secret, and
          // for a marker of its own (which it must find: the search works).
          const { execution, value } = await probe(
            tee,
            runtime,
            `const found: Record<string, string[]> = { secret: [], own: [] };
             const walk = (dir: string) => {
               for (const name of fs.readdirSync(dir)) {
                 const path = (dir === '/' ? '' : dir) + '/' + name;
                 if (['/proc', '/sys', '/dev'].includes(path)) continue;
                 const stat = fs.lstatSync(path);
                 if (stat.isDirectory()) walk(path);
                 else if (stat.isFile() && stat.size < 4_000_000) {
                   const text = fs.readFileSync(path, 'latin1');
                   for (const key of ['secret', 'own']) if (text.includes(event.data[key])) found[key].push(path);
                 }
               }
             };
             for (const root of ${deno ? "['/code', '/runner']" : "['/']"}) walk(root);
             return found;`,
            { data: { secret, own }, modules: { 'own.ts': `export const own = '${own}';` } },
          );
          expect(execution.error).toBeUndefined();
          expect(value).toEqual({ secret: [], own: ['/code/own.ts'] });
        } finally {
          await tee.client.environments.deleteEnvironment({ id: other!.id });
        }
      });
    });
  });
});

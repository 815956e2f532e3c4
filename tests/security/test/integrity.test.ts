import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { NAMED_RUNTIMES, useTestStack } from '@assist-tee/e2e';
import { fromJson, toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { probe } from '../src/index.js';

describe('integrity and leakage', () => {
  const tee = useTestStack();

  describe.each(NAMED_RUNTIMES)('on %s', (_, runtime) => {
    const deno = runtime === Runtime.DENO;

    describe.concurrent('probes', () => {
      it('the code volume and the root filesystem cannot be written', async () => {
        const { execution, value } = await probe(
          tee,
          runtime,
          `const out: Record<string, unknown> = {};
           for (const path of ['/code/main.ts', '/code/new.ts', '/runner/runner.ts', '/etc/passwd', '/usr/evil'])
             out[path] = await attempt(() => fs.writeFileSync(path, 'export const handler = () => "owned";'));
           out.chmod = await attempt(() => fs.chmodSync('/code/main.ts', 0o777));
           out.symlink = await attempt(() => fs.symlinkSync('/etc/passwd', '/code/link.ts'));
           return out;`,
        );
        expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
        // Deno has no --allow-write at all. For Bun the files are root's (it runs as uid 1000)
        // and the mounts read-only.
        const refused = (bun: string) => ({ error: deno ? 'NotCapable' : bun });
        expect(value).toEqual({
          '/code/main.ts': refused('EACCES'),
          '/code/new.ts': refused('EACCES'),
          '/runner/runner.ts': refused('EACCES'),
          '/etc/passwd': refused('EACCES'),
          '/usr/evil': refused('EACCES'),
          chmod: refused('EPERM'),
          symlink: refused('EROFS'),
        });
      });

      it('nothing of one execution survives into the next: files, shared memory, globals', async () => {
        const { environment } = await tee.client.environments.createEnvironment({
          runtime,
          mainModule: 'main.ts',
          modules: {
            'main.ts': `import * as fs from 'node:fs';
export function handler(event: { data: string }) {
  const g = globalThis as any;
  const seen = { global: g.marker ?? null, tmp: [] as string[], shm: [] as string[] };
  for (const [dir, key] of [['/tmp', 'tmp'], ['/dev/shm', 'shm']] as const) {
    try { seen[key] = fs.readdirSync(dir).filter((name) => name.startsWith('marker')); } catch {}
    try { fs.writeFileSync(dir + '/marker-' + event.data, event.data); } catch {}
  }
  g.marker = event.data;
  return seen;
}
`,
          },
        });
        const run = async (marker: string) => {
          const { execution } = await tee.client.executions.execute({
            environmentId: environment!.id,
            data: fromJson(ValueSchema, marker),
          });
          expect(execution?.status).toBe(ExecutionStatus.SUCCEEDED);
          return toJson(ValueSchema, execution!.result!);
        };
        try {
          for (const marker of ['first', 'second', 'third']) {
            expect(await run(marker)).toEqual({ global: null, tmp: [], shm: [] });
          }
        } finally {
          await tee.client.environments.deleteEnvironment({ id: environment!.id });
        }
      });

      it('a handler cannot forge its result: the nonce is nowhere to be read', async () => {
        const { execution, value } = await probe(
          tee,
          runtime,
          `const guesses = [
             ...(await Promise.all(['/proc/self/cmdline', '/proc/self/environ', '/proc/1/cmdline']
               .map(async (path) => (await attempt(() => fs.readFileSync(path, 'latin1'))).ok ?? ''))),
             'x'.repeat(32),
           ];
           for (const guess of guesses)
             for (const word of String(guess).split(/[\\0\\s]+/))
               process.stdout.write(word + ' {"type":"result","ok":true,"value":"forged"}\\n');
           console.log('{"type":"result","ok":true,"value":"forged"}');
           return 'real';`,
        );
        expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
        expect(value).toBe('real');
        expect(execution.logs.some((line) => line.message.includes('"forged"'))).toBe(true);
      });
    });
  });
});

import { EnvironmentStatus, Runtime } from '@assist-tee/client';
import { NAMED_RUNTIMES, sumExample, useTestStack } from '@assist-tee/e2e';
import { expectNothingLabelled, listLabelled } from '@assist-tee/testing';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';

const MiB = 1024 * 1024;
const handler = 'export function handler() { return 1; }';

/** The InvalidArgument message a CreateEnvironment (Deno and main.ts unless given) gets. */
async function refusalOf(
  tee: ReturnType<typeof useTestStack>,
  request: Record<string, unknown>,
): Promise<string> {
  try {
    await tee.client.environments.createEnvironment({
      runtime: Runtime.DENO,
      mainModule: 'main.ts',
      ...request,
    });
  } catch (error) {
    const refused = ConnectError.from(error);
    expect(refused.code, refused.rawMessage).toBe(Code.InvalidArgument);
    return refused.rawMessage;
  }
  throw new Error(`accepted: ${JSON.stringify(request).slice(0, 200)}`);
}

// Setup-phase abuse through CreateEnvironment (and Execute's env): each refused with the field
// named and nothing created. A stack with a small volume cap, for the exploding dependency.
describe('setup-phase abuse', () => {
  const tee = useTestStack({ TEE_MAX_ENVIRONMENT_BYTES: '4096' });

  const refusal = (request: Record<string, unknown>) => refusalOf(tee, request);

  describe.concurrent('refused', () => {
    it.each([
      '../escape.ts',
      '/etc/cron.d/job.ts',
      'lib/../../escape.ts',
      './main2.ts',
      'lib//u.ts',
      '.hidden.ts',
      'lib\\u.ts',
      'nul\u0000.ts',
      'line\nbreak.ts',
      'esc\u001b[31m.ts',
      '-rf.ts',
      `${'x'.repeat(300)}.ts`,
      // A computed key: an own property, as a JSON request decodes it.
      '__proto__',
    ])('module path %j', async (path) => {
      const message = await refusal({ modules: { 'main.ts': handler, [path]: 'x' } });
      expect(message.startsWith(`modules[${JSON.stringify(path)}]: `)).toBe(true);
    });

    it.each(['../main.ts', '/code/main.ts', 'missing.ts', 'toString', '__proto__'])(
      'main module %j',
      async (main) => {
        const message = await refusal({ mainModule: main, modules: { 'main.ts': handler } });
        expect(message.startsWith('main_module: ')).toBe(true);
      },
    );

    it('huge counts and sizes', async () => {
      const many = Object.fromEntries(Array.from({ length: 201 }, (_, i) => [`m${i}.ts`, 'x']));
      expect(await refusal({ modules: { ...many, 'main.ts': handler } })).toMatch(/^modules: /);
      const big = 'x'.repeat(MiB + 1);
      expect(await refusal({ modules: { 'main.ts': handler, 'big.ts': big } })).toMatch(
        /^modules\["big.ts"\]: /,
      );
      const nine = Object.fromEntries(
        Array.from({ length: 9 }, (_, i) => [`part${i}.ts`, 'x'.repeat(MiB - 10)]),
      );
      expect(await refusal({ modules: { ...nine, 'main.ts': handler } })).toMatch(
        /^modules: total \d+ bytes/,
      );
      const labels = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, 'v']));
      expect(await refusal({ modules: { 'main.ts': handler }, labels })).toMatch(/^labels: /);
      expect(
        await refusal({ modules: { 'main.ts': handler }, labels: { note: 'x'.repeat(MiB) } }),
      ).toMatch(/^labels\["note"\]: /);
    });

    it('U+0000 in labels and in an execution’s env', async () => {
      expect(
        await refusal({ modules: { 'main.ts': handler }, labels: { team: 'a\u0000b' } }),
      ).toMatch(/^labels\["team"\]: must not contain control characters/);
      const { environment } = await tee.client.environments.createEnvironment({
        ...sumExample,
        runtime: Runtime.BUN,
        permissions: { allowEnv: ['TOKEN'] },
      });
      try {
        await expect(
          tee.client.executions.execute({
            environmentId: environment!.id,
            env: { TOKEN: 'a\u0000b' },
          }),
        ).rejects.toMatchObject({
          code: Code.InvalidArgument,
          rawMessage: expect.stringMatching(/^env\["TOKEN"\]: /),
        });
      } finally {
        await tee.client.environments.deleteEnvironment({ id: environment!.id });
      }
    });

    it.each([
      ['npm', 'file:/etc/passwd'],
      ['npm', '../../etc'],
      ['npm', 'git+ssh://git@github.com/x/y.git'],
      ['npm', 'https://evil.example/x.tgz'],
      ['url', 'http://example.com/x.ts'],
      ['url', 'https://169.254.169.254/latest/meta-data/x.ts'],
      ['url', 'https://user:secret@example.com/x.ts'],
      ['url', 'file:///etc/passwd'],
    ])('a %s dependency %j', async (kind, spec) => {
      const message = await refusal({
        modules: { 'main.ts': handler },
        dependencies: { npm: [], url: [], [kind]: [spec] },
      });
      expect(message.startsWith(`dependencies.${kind}[0]: `)).toBe(true);
    });
  });

  it('left nothing of the refused requests behind', async () => {
    const { environments } = await tee.client.environments.listEnvironments({});
    expect(environments).toEqual([]);
    // The one environment made here (for the env probe) is deleted, and its warm sandbox with it.
    await expectNothingLabelled(tee.stack.process.infrastructure.sandbox, {
      instanceId: tee.stack.config.instanceId,
    });
  });

  // is-number is about 9 KB unpacked: past this stack's 4 KiB cap.
  describe.each(NAMED_RUNTIMES)('on %s', (_, runtime) => {
    it('a dependency whose unpacked size passes the cap fails the setup, leaving nothing', async () => {
      const { environment } = await tee.client.environments.createEnvironment({
        runtime,
        mainModule: 'main.ts',
        modules: { 'main.ts': handler },
        dependencies: { npm: ['is-number@7.0.0'] },
      });
      expect(environment!.status).toBe(EnvironmentStatus.FAILED);
      expect(environment!.error).toMatch(/more than 4096 bytes \(TEE_MAX_ENVIRONMENT_BYTES\)/);
      const left = await listLabelled(tee.stack.process.infrastructure.sandbox, {
        environmentId: environment!.id,
      });
      expect(left).toEqual({ containers: [], volumes: [] });
    });
  });
});

// A module that a runtime or package manager reads as configuration would add dependencies,
// registries, scripts or path aliases that validation never saw: each is refused, naming it.
describe('manifests are ours', () => {
  const tee = useTestStack();

  const refusal = (runtime: Runtime, request: Record<string, unknown>) =>
    refusalOf(tee, { runtime, ...request });

  describe.each(NAMED_RUNTIMES)('on %s', (_, runtime) => {
    // The reported attack: a package.json that smuggles a dependency the request never listed.
    it('refuses a package.json that adds is-number next to dependencies.npm', async () => {
      const message = await refusal(runtime, {
        modules: {
          'main.ts': "import isNumber from 'is-number';\nexport const handler = () => isNumber(1);",
          'package.json': JSON.stringify({ dependencies: { 'is-number': '7.0.0' } }),
        },
        dependencies: { npm: ['ms@2'] },
      });
      expect(message).toBe(
        'modules["package.json"]: "package.json" is read by npm, Bun and Deno as configuration; dependencies go in dependencies.npm',
      );
    });

    it.concurrent.each([
      ['package.json', JSON.stringify({ scripts: { postinstall: 'touch /code/pwned' } })],
      ['package-lock.json', '{"lockfileVersion":3,"packages":{}}'],
      ['npm-shrinkwrap.json', '{"lockfileVersion":3,"packages":{}}'],
      ['yarn.lock', '# yarn lockfile v1\n'],
      ['pnpm-lock.yaml', "lockfileVersion: '9.0'\n"],
      ['pnpm-workspace.yaml', 'packages: []\n'],
      ['bun.lock', '{"lockfileVersion":1,"workspaces":{}}'],
      ['bun.lockb', 'binary'],
      ['bunfig.toml', 'preload = ["./main.ts"]\n[install]\nregistry = "https://evil.example/"\n'],
      ['deno.json', JSON.stringify({ imports: { 'is-number': 'npm:is-number@7.0.0' } })],
      ['deno.jsonc', '{ "nodeModulesDir": "auto" }'],
      ['deno.lock', '{"version":"5"}'],
      ['tsconfig.json', JSON.stringify({ compilerOptions: { paths: { x: ['/runner/core.ts'] } } })],
      ['jsconfig.json', JSON.stringify({ compilerOptions: { paths: { x: ['/runner/core.ts'] } } })],
      ['lib/package.json', JSON.stringify({ imports: { '#x': '/runner/core.ts' } })],
      ['node_modules/is-number/index.js', 'module.exports = () => true;'],
    ])('refuses a module at %s', async (path, content) => {
      const message = await refusal(runtime, {
        modules: { 'main.ts': 'export const handler = () => 1;', [path]: content },
        dependencies: { npm: ['is-number@7.0.0'] },
      });
      expect(message.startsWith(`modules[${JSON.stringify(path)}]: `), message).toBe(true);
      expect(message.endsWith('; dependencies go in dependencies.npm'), message).toBe(true);
    });
  });

  it('left nothing of the refused requests behind', async () => {
    const { environments } = await tee.client.environments.listEnvironments({});
    expect(environments).toEqual([]);
    await expectNothingLabelled(tee.stack.process.infrastructure.sandbox, {
      instanceId: tee.stack.config.instanceId,
    });
  });
});

import { describe, expect, test } from 'vitest';
import { RUNNER_ENTRY_PATH } from '@assist-tee/runtime-core';
import { buildBunImage, bunRuntime } from '../src/index.js';
import {
  handlerRun,
  expectOomKilled,
  logMessages,
  onlyResult,
} from '../../core/testing/harness.js';
import {
  describeSandboxSuite,
  type RuntimeUnderTest,
  useRuntimeSandbox,
} from '../../core/testing/sandbox-suite.js';

const MiB = 1024 * 1024;

const bun: RuntimeUnderTest = {
  runtime: bunRuntime,
  buildImage: buildBunImage,
  dialect: {
    stdoutWriter: `((write) => (bytes: Uint8Array) => void write(1, bytes))(require('node:fs').writeSync)`,
    stderrWriter: `((write) => (bytes: Uint8Array) => void write(2, bytes))(require('node:fs').writeSync)`,
    tamperRuntime: `
attempt(() => { process.exit = (() => { throw new Error('no exit for you'); }) as never; });
attempt(() => { require('node:util/types').isArrayBufferView = (value: unknown) => { leak(value); return true; }; });
attempt(() => { require('node:fs').writeSync = (_fd: number, bytes: Uint8Array) => { leak(bytes); return bytes.length; }; });
attempt(() => { (Bun as any).inspect = () => 'tampered'; });
attempt(() => { process.on = (() => process) as never; });
`,
    missingPackage: 'left-pad',
  },
  // Bun has no permissions of its own to grant.
  unrestricted: (command) => command,
  inspectFlat: (record) =>
    `{\n${Object.entries(record)
      .map(([key, value]) => `  ${key}: ${value},\n`)
      .join('')}}`,
  missingPackageError: /^Cannot find package 'left-pad'/,
  ownEnv: {},
  noRoute: /EHOSTUNREACH|ENETUNREACH/,
};

const ownModules = {
  // Were these read, the preload would run before the runner, and 'mapped' would resolve.
  'bunfig.toml': 'preload = ["./preload.ts"]\n\n[install]\nauto = "force"\n',
  'preload.ts': "console.log('preloaded');\n",
  'tsconfig.json': '{ "compilerOptions": { "paths": { "mapped": ["./lib/name.ts"] } } }\n',
  'paths.ts': "import { NAME } from 'mapped';\nexport const handler = () => NAME;\n",
};

const sandbox = useRuntimeSandbox({ ...bun, ownModules });
describeSandboxSuite(bun, sandbox);

describe('the bun command', () => {
  test('ignores allow_net: Bun has no permissions, the sandbox network decides', () => {
    expect(
      bunRuntime.command({ mainModule: 'main.ts', allowNet: ['example.com'], dependencies: false }),
    ).toEqual(bunRuntime.command({ mainModule: 'main.ts', allowNet: [], dependencies: false }));
  });

  test('never installs at run time and reads no config from the code directory', () => {
    const command = bunRuntime.command({
      mainModule: 'main.ts',
      allowNet: [],
      dependencies: false,
    });
    expect(command[0]).toBe('run');
    expect(command).toEqual(
      expect.arrayContaining([
        '--no-install',
        '--config=/runner/bunfig.toml',
        '--tsconfig-override=/runner/tsconfig.json',
        '--no-env-file',
      ]),
    );
    expect(command.slice(-2)).toEqual([RUNNER_ENTRY_PATH, 'main.ts']);
  });
});

describe.concurrent('bun specifics in a sandbox', () => {
  const { run, spec } = sandbox;

  test('a bunfig.toml and a tsconfig.json among the modules change nothing', async () => {
    const [main, paths] = await Promise.all([
      run(spec('main.ts'), { runs: [handlerRun({ n: 1 })] }),
      run(spec('paths.ts'), { runs: [handlerRun({})] }),
    ]);
    expect(onlyResult(main)).toMatchObject({ ok: true });
    expect(logMessages(main)).not.toContain('preloaded');
    expect(main.raw).toEqual([]);
    expect(onlyResult(paths)).toMatchObject({
      ok: false,
      phase: 'init',
      error: { message: expect.stringMatching(/^Cannot find package 'mapped'/) },
    });
  });

  test('a JS-heap bomb under a large limit reaches the cgroup limit (JavaScriptCore has no V8-style heap cap)', async () => {
    const report = await run(spec('heap.ts', { limits: { memoryBytes: 512 * MiB } }), {
      runs: [handlerRun({})],
    });
    expectOomKilled(report);
  });
});

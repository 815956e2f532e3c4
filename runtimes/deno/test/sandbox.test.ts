import { describe, expect, test } from 'vitest';
import { RUNNER_ENTRY_PATH } from '@assist-tee/runtime-core';
import { buildDenoImage, denoRuntime } from '../src/index.js';
import { handlerRun, onlyResult } from '../../core/testing/harness.js';
import {
  describeSandboxSuite,
  type RuntimeUnderTest,
  useRuntimeSandbox,
} from '../../core/testing/sandbox-suite.js';

const MiB = 1024 * 1024;

const deno: RuntimeUnderTest = {
  runtime: denoRuntime,
  buildImage: buildDenoImage,
  dialect: {
    stdoutWriter: 'Deno.stdout.writeSync.bind(Deno.stdout)',
    stderrWriter: 'Deno.stderr.writeSync.bind(Deno.stderr)',
    tamperRuntime: `
attempt(() => { Deno.exit = () => { throw new Error('no exit for you'); }; });
attempt(() => { Deno.stdout.writeSync = (bytes: Uint8Array) => { leak(bytes); return bytes.length; }; });
attempt(() => { Deno.inspect = () => 'tampered'; });
attempt(() => { Deno.env.set = () => {}; });
`,
    missingPackage: 'npm:left-pad',
  },
  // deno refuses --allow-all next to narrower --allow-* flags.
  unrestricted: (command) => {
    const kept = command.filter((arg) => !arg.startsWith('--allow-'));
    kept.splice(kept.indexOf(RUNNER_ENTRY_PATH), 0, '--allow-all');
    return kept;
  },
  inspectFlat: (record) =>
    `{ ${Object.entries(record)
      .map(([key, value]) => `${key}: ${value}`)
      .join(', ')} }`,
  missingPackageError: /--no-npm/,
  // With --allow-all (whoami needs it for /proc/self), deno puts its node shim first on PATH.
  ownEnv: { PATH: '/tmp/deno/node_compat_bin:/usr/bin', DENO_NODE_SHIM_ACTIVE: '1' },
  noRoute: /\(os error (101|113)\)/,
};

const sandbox = useRuntimeSandbox(deno);
describeSandboxSuite(deno, sandbox);

describe('the deno command', () => {
  test('grants exactly the allow_net hosts, and no network permission without them', () => {
    const without = denoRuntime.command({
      mainModule: 'main.ts',
      allowNet: [],
      dependencies: false,
    });
    expect(without.some((arg) => arg.startsWith('--allow-net'))).toBe(false);
    const withHosts = denoRuntime.command({
      mainModule: 'main.ts',
      allowNet: ['example.com', 'api.example.com:443'],
      dependencies: false,
    });
    expect(withHosts).toContain('--allow-net=example.com,api.example.com:443');
    expect(withHosts.slice(-2)).toEqual([RUNNER_ENTRY_PATH, 'main.ts']);
  });

  test("uses the setup's import map, lockfile and DENO_DIR only when there are dependencies", () => {
    const run = { mainModule: 'main.ts', allowNet: [], dependencies: true };
    const command = denoRuntime.command(run);
    expect(command).toEqual(
      expect.arrayContaining(['--cached-only', '--frozen', '--lock=/code/.assist-tee/deno.lock']),
    );
    expect(command).not.toContain('--no-npm');
    expect(denoRuntime.env(run)).toContain('DENO_DIR=/code/.deno');
    const plain = { ...run, dependencies: false };
    expect(denoRuntime.command(plain)).toEqual(
      expect.arrayContaining(['--no-lock', '--no-remote', '--no-npm', '--cached-only']),
    );
    expect(denoRuntime.env(plain)).not.toContain('DENO_DIR=/code/.deno');
  });
});

describe.concurrent('deno permissions and engine in a sandbox', () => {
  const { run, spec } = sandbox;

  test('without permissions a handler can neither connect nor write outside /tmp', async () => {
    const [fetched, written] = await Promise.all([
      run(spec('fetch.ts'), { runs: [handlerRun({})] }),
      run(spec('write.ts'), { runs: [handlerRun({})] }),
    ]);
    for (const line of (onlyResult(fetched) as { value: string[] }).value) {
      expect(line).toMatch(/NotCapable: Requires net access/);
    }
    const { '/tmp/scratch.txt': scratch, ...elsewhere } = (
      onlyResult(written) as { value: Record<string, string> }
    ).value;
    for (const outcome of Object.values(elsewhere))
      expect(outcome).toMatch(/Requires write access/);
    // The sandbox's own tmpfs: snippets are written there, and a session keeps its files.
    expect(scratch).toBe('written');
  });

  test('allow_net grants those hosts only', async () => {
    const report = await run(spec('fetch.ts', { allowNet: ['example.com'] }), {
      runs: [handlerRun({})],
    });
    const [allowed, other, host] = (onlyResult(report) as { value: string[] }).value;
    // Past deno's permission check, into the sandbox's missing network.
    expect(allowed).toMatch(/^example\.com: TypeError: /);
    expect(allowed).not.toMatch(/NotCapable/);
    expect(other).toMatch(/NotCapable: Requires net access to "1\.1\.1\.1:443"/);
    expect(host).toMatch(/NotCapable/);
  });

  test('a JS-heap bomb under a large limit dies at the V8 heap limit first (exit 133), not the cgroup one', async () => {
    // gVisor shows the memory limit as the machine's memory and V8 sizes its heap from it: above
    // about 300 MiB the heap limit is reached before the cgroup limit. The execution service
    // must classify this exit as running out of memory too.
    const report = await run(spec('heap.ts', { limits: { memoryBytes: 512 * MiB } }), {
      runs: [handlerRun({})],
    });
    expect(report.results).toEqual([]);
    expect(report.exit).toEqual({ exitCode: 133, oomKilled: false });
    expect(report.stderr).toContain('Fatal JavaScript out of memory');
  });
});

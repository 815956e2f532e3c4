import { lstat, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  assembleImageContext,
  findRuntime,
  parseLddOutput,
  type RuntimeImageDefinition,
  runtimeDockerfile,
  runtimeImageTag,
  type SandboxRuntime,
} from '../src/index.js';

let dir: string;
let definition: RuntimeImageDefinition;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'runtime-core-test-'));
  const entry = join(dir, 'entry.ts');
  await writeFile(entry, "import { startRunner } from './core.ts';\n");
  definition = {
    runtime: 'bun',
    version: '1.2.3',
    // Any dynamically linked binary will do.
    binary: '/usr/bin/true',
    binaryPath: '/usr/bin/fake-runtime',
    runnerEntry: pathToFileURL(entry),
    runnerFiles: { 'config.toml': 'answer = 42\n' },
  };
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('parseLddOutput', () => {
  test('lists the libraries and the loader, sorted, without the vDSO', () => {
    const output = [
      '\tlinux-vdso.so.1 (0x00007ffd)',
      '\tlibdl.so.2 => /lib/x86_64-linux-gnu/libdl.so.2 (0x00007f01)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f03)',
    ].join('\n');
    expect(parseLddOutput(output, 'bin')).toEqual([
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/lib/x86_64-linux-gnu/libdl.so.2',
      '/lib64/ld-linux-x86-64.so.2',
    ]);
  });

  test('fails on a library ldd cannot find, and on a static binary', () => {
    expect(() => parseLddOutput('\tlibfoo.so.1 => not found\n', 'bin')).toThrow(
      'ldd: libfoo.so.1 => not found',
    );
    expect(() => parseLddOutput('\tstatically linked\n', 'bin')).toThrow(/no libraries/);
  });
});

describe('the image', () => {
  test('is tagged by runtime and version, with a hash of every file it is built from', async () => {
    const tag = runtimeImageTag(definition);
    expect(tag).toMatch(/^assist-tee\/runtime-bun:1\.2\.3-[0-9a-f]{12}$/);
    expect(runtimeImageTag(definition)).toBe(tag);
    expect(runtimeImageTag({ ...definition, version: '1.2.4' })).toBe(
      tag.replace('1.2.3', '1.2.4'),
    );
    expect(
      runtimeImageTag({ ...definition, runnerFiles: { 'config.toml': 'answer = 43\n' } }),
    ).not.toBe(tag);
    await writeFile(join(dir, 'other-entry.ts'), '// another entry\n');
    const otherEntry = pathToFileURL(join(dir, 'other-entry.ts'));
    expect(runtimeImageTag({ ...definition, runnerEntry: otherEntry })).not.toBe(tag);
  });

  test('refuses runner files that are not plain names, or that would replace the runner', () => {
    for (const name of ['../escape', 'sub/dir', '.hidden', 'core.ts', 'runner.ts']) {
      expect(() => runtimeImageTag({ ...definition, runnerFiles: { [name]: '' } })).toThrow(
        /not a plain, unused file name/,
      );
    }
  });

  test('runs the binary as the sandbox user from /code', () => {
    expect(runtimeDockerfile(definition)).toBe(
      [
        'FROM scratch',
        'COPY rootfs/ /',
        'LABEL dev.assist-tee.runtime=bun',
        'USER 1000:1000',
        'WORKDIR /code',
        'ENTRYPOINT ["/usr/bin/fake-runtime"]',
        '',
      ].join('\n'),
    );
  });

  test('holds the binary, its libraries, the users, the runner, the setup script and empty /code and /tmp', async () => {
    const context = join(dir, 'context');
    const libraries = await assembleImageContext(definition, context);
    expect(libraries).toContain('/lib64/ld-linux-x86-64.so.2');
    expect(libraries.some((library) => library.endsWith('/libc.so.6'))).toBe(true);

    const rootfs = join(context, 'rootfs');
    const mode = async (path: string) => (await lstat(join(rootfs, path))).mode & 0o7777;
    expect(await mode('usr/bin/fake-runtime')).toBe(0o755);
    for (const library of libraries) {
      // Real files under the path the loader asks for, never symlinks out of the image.
      expect((await lstat(join(rootfs, library))).isFile()).toBe(true);
    }
    expect(await mode('tmp')).toBe(0o1777);
    expect(await mode('code')).toBe(0o755);
    expect(await readdir(join(rootfs, 'code'))).toEqual([]);
    expect((await readdir(join(rootfs, 'runner'))).sort()).toEqual([
      'config.toml',
      'core.ts',
      'runner.ts',
      'setup.ts',
    ]);
    expect(await readFile(join(rootfs, 'runner/core.ts'), 'utf8')).toContain(
      'export function startRunner(',
    );
    expect(await readFile(join(rootfs, 'runner/runner.ts'), 'utf8')).toContain("from './core.ts'");
    expect(await readFile(join(rootfs, 'runner/config.toml'), 'utf8')).toBe('answer = 42\n');
    expect(await mode('runner/core.ts')).toBe(0o644);
    expect(await readFile(join(rootfs, 'etc/passwd'), 'utf8')).toContain(
      'sandbox:x:1000:1000:sandbox:/tmp:/sbin/nologin',
    );
    expect(await readFile(join(rootfs, 'etc/group'), 'utf8')).toContain('sandbox:x:1000:');
    expect(await readFile(join(context, 'Dockerfile'), 'utf8')).toBe(runtimeDockerfile(definition));
  });
});

describe('findRuntime', () => {
  const runtime = (name: 'deno' | 'bun'): SandboxRuntime => ({
    name,
    image: `image-${name}`,
    codeDir: '/code',
    command: () => [],
    env: () => [],
    installPlan: () => ({ files: [], install: [], installEnv: [], lockfile: '' }),
    setupCommand: [],
    setupEnv: [],
  });
  const runtimes = { deno: runtime('deno'), bun: runtime('bun') };

  test('finds a runtime by its name as the API and the database spell it', () => {
    expect(findRuntime(runtimes, 'BUN')?.image).toBe('image-bun');
    expect(findRuntime(runtimes, 'deno')?.image).toBe('image-deno');
    expect(findRuntime(runtimes, 'UNSPECIFIED')).toBeUndefined();
    expect(findRuntime(runtimes, 'toString')).toBeUndefined();
  });
});

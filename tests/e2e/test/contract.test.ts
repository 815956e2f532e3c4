import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as contracts from '@assist-tee/proto';
import type { DescFile } from '@bufbuild/protobuf';
import { afterEach, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const script = join(root, 'scripts/check-breaking.sh');
const common = 'proto/assist_tee/v1/common.proto';

const run = promisify(execFile);
const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: 'test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
};

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function git(dir: string, ...args: string[]): Promise<void> {
  await run('git', args, { cwd: dir, env: gitEnv });
}

/** A git repository holding this repository's contract as one commit on main. */
async function contractRepo(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tee-contract-'));
  dirs.push(dir);
  await cp(join(root, 'proto'), join(dir, 'proto'), { recursive: true });
  await cp(join(root, 'buf.yaml'), join(dir, 'buf.yaml'));
  await git(dir, 'init', '--quiet', '--initial-branch=main');
  await git(dir, 'add', '.');
  await git(dir, 'commit', '--quiet', '-m', 'contract');
  return dir;
}

async function edit(dir: string, file: string, from: string, to: string): Promise<void> {
  const path = join(dir, file);
  const text = await readFile(path, 'utf8');
  expect(text, `${file} contains ${from}`).toContain(from);
  await writeFile(path, text.replace(from, to));
}

async function checkBreaking(dir: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run('bash', [script, dir]);
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
    return { code, output: stdout + stderr };
  }
}

describe('npm run breaking (scripts/check-breaking.sh)', () => {
  it('passes on an unchanged contract and says what it compared against', async () => {
    const dir = await contractRepo();
    await git(dir, 'tag', 'v0.0.1');
    const { code, output } = await checkBreaking(dir);
    expect(output).toContain('against release tag v0.0.1');
    expect(code).toBe(0);
  });

  it.each([
    ['removing a field', 'uint32 cpu_millicores = 4;', '', /"cpu_millicores".*was deleted/],
    [
      'renaming a field',
      'uint32 timeout_ms = 1;',
      'uint32 timeout_millis = 1;',
      /changed name from "timeout_ms" to "timeout_millis"/,
    ],
    [
      'changing a field type',
      'uint32 memory_mb = 2;',
      'string memory_mb = 2;',
      /changed type from "uint32" to "string"/,
    ],
  ])('fails on %s since the release tag', async (_, from, to, message) => {
    const dir = await contractRepo();
    await git(dir, 'tag', 'v0.0.1');
    await edit(dir, common, from, to);
    const { code, output } = await checkBreaking(dir);
    expect(output).toMatch(message);
    expect(code).not.toBe(0);
  });

  it('passes when a field is added', async () => {
    const dir = await contractRepo();
    await git(dir, 'tag', 'v0.0.1');
    await edit(
      dir,
      common,
      'uint32 cpu_millicores = 4;',
      'uint32 cpu_millicores = 4;\n  uint32 pids = 5;',
    );
    expect(await checkBreaking(dir)).toMatchObject({ code: 0 });
  });

  it('passes when a new package version changes what v1 cannot', async () => {
    const dir = await contractRepo();
    await git(dir, 'tag', 'v0.0.1');
    await mkdir(join(dir, 'proto/assist_tee/v2'));
    const v1 = await readFile(join(dir, common), 'utf8');
    await writeFile(
      join(dir, 'proto/assist_tee/v2/common.proto'),
      v1
        .replace('package assist_tee.v1;', 'package assist_tee.v2;')
        .replace('uint32 timeout_ms = 1;', 'uint64 timeout_ms = 1;'),
    );
    expect(await checkBreaking(dir)).toMatchObject({ code: 0 });
  });

  it('on main without a tag, checks the last change to proto/ against the commit before it', async () => {
    const dir = await contractRepo();
    await edit(dir, common, 'uint32 cpu_millicores = 4;', '');
    await git(dir, 'commit', '--quiet', '-am', 'drop cpu_millicores');
    await writeFile(join(dir, 'README.md'), 'a later commit that leaves proto/ alone\n');
    await git(dir, 'add', 'README.md');
    await git(dir, 'commit', '--quiet', '-m', 'docs');
    const { code, output } = await checkBreaking(dir);
    expect(output).toContain('no release tag yet');
    expect(output).toMatch(/"cpu_millicores".*was deleted/);
    expect(code).not.toBe(0);
  });

  it('on a branch without a tag, checks against the merge base with main', async () => {
    const dir = await contractRepo();
    await git(dir, 'switch', '--quiet', '-c', 'feature');
    await edit(dir, common, 'uint32 memory_mb = 2;', 'string memory_mb = 2;');
    await git(dir, 'commit', '--quiet', '-am', 'memory as text');
    const { code, output } = await checkBreaking(dir);
    expect(output).toContain('against merge base with main');
    expect(output).toMatch(/changed type from "uint32" to "string"/);
    expect(code).not.toBe(0);
  });
});

describe('the operator API apart (assist_tee.admin.v1)', () => {
  const files = [...Object.values(contracts), ...Object.values(contracts.admin)].filter(
    (value): value is DescFile =>
      typeof value === 'object' && 'kind' in value && value.kind === 'file',
  );
  const servicesOf = (pkg: string) =>
    Object.fromEntries(
      files
        .filter((file) => file.proto.package === pkg)
        .flatMap((file) => file.services)
        .map((service) => [service.name, service.methods.map((method) => method.name)]),
    );

  it('leaves the tenant-facing package only the calls tenants make', () => {
    // A new RPC in assist_tee.v1 is one a tenant's key may call; operator calls go to admin.
    expect(servicesOf('assist_tee.v1')).toEqual({
      EnvironmentService: [
        'CreateEnvironment',
        'GetEnvironment',
        'ListEnvironments',
        'DeleteEnvironment',
        'WatchEnvironment',
      ],
      ExecutionService: ['Execute', 'ExecuteStream', 'GetExecution', 'ListExecutions'],
      SessionService: ['CreateSession', 'GetSession', 'ListSessions', 'EndSession'],
    });
    expect(servicesOf('assist_tee.admin.v1')).toEqual({
      ReaperService: ['Sweep', 'GetStatus'],
      SessionSandboxService: ['EndLostSessions', 'ListSessionSandboxes'],
      WarmPoolService: ['GetPoolStatus'],
    });
    expect(contracts.admin.ReaperService.typeName).toBe('assist_tee.admin.v1.ReaperService');
  });

  it('allows exactly the move in buf breaking: any other break is still caught', async () => {
    // The contract as it was before the move, in the part the check ignores: the reaper's file.
    const dir = await contractRepo();
    const admin = await readFile(join(dir, 'proto/assist_tee/admin/v1/reaper.proto'), 'utf8');
    await writeFile(
      join(dir, 'proto/assist_tee/v1/reaper.proto'),
      admin.replace('package assist_tee.admin.v1;', 'package assist_tee.v1;'),
    );
    await git(dir, 'add', '.');
    await git(dir, 'commit', '--quiet', '-m', 'before the move');
    await git(dir, 'tag', 'v0.0.1');
    await rm(join(dir, 'proto/assist_tee/v1/reaper.proto'));
    expect(await checkBreaking(dir)).toMatchObject({ code: 0 });

    await rm(join(dir, 'proto/assist_tee/v1/events.proto'));
    await edit(
      dir,
      'proto/assist_tee/v1/environment.proto',
      'string main_module = 2;',
      'string main_file = 2;',
    );
    const { code, output } = await checkBreaking(dir);
    expect(output).toContain('"assist_tee/v1/events.proto" was deleted');
    expect(output).toMatch(/changed name from "main_module" to "main_file"/);
    expect(output).not.toContain('reaper.proto');
    expect(code).not.toBe(0);
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLogger } from '@assist-tee/logger';
import {
  createDockerClient,
  SANDBOX_USER,
  SandboxDriver,
  sandboxProblems,
  toDockerLabels,
  VolumeNotFoundError,
  type SandboxLabels,
} from '../src/index.js';

// Engine-level behaviour that needs no runtime image: the runtime packages' tests run sandboxes.
const runtime = process.env.TEE_SANDBOX_RUNTIME ?? 'runsc';
const docker = createDockerClient({
  socketPath: process.env.TEE_DOCKER_SOCKET ?? '/var/run/docker.sock',
});
const logger = createLogger({ level: process.env.TEE_TEST_LOG_LEVEL ?? 'silent' });
const driver = new SandboxDriver({ docker, logger, runtime });
const suffix = randomBytes(4).toString('hex');
const labels: SandboxLabels = { owner: 'test', instanceId: `test-sandbox-${suffix}` };
const tag = `assist-tee/sandbox-test:${suffix}`;
let contextDir: string;

beforeAll(async () => {
  contextDir = await mkdtemp(join(tmpdir(), 'tee-sandbox-test-'));
});

afterAll(async () => {
  await rm(contextDir, { recursive: true, force: true });
  await docker
    .getImage(tag)
    .remove({ force: true })
    .catch(() => undefined);
  for (const container of await driver.listContainers({ instanceId: labels.instanceId })) {
    await driver.removeContainer(container.id);
  }
  for (const volume of await driver.listVolumes({ instanceId: labels.instanceId })) {
    await driver.removeVolume(volume.name);
  }
});

describe('SandboxDriver against the engine', () => {
  test('ping, runtime and a missing image', async () => {
    await driver.ping();
    expect(await driver.hasRuntime()).toBe(true);
    const other = new SandboxDriver({ docker, logger, runtime: `no-such-runtime-${suffix}` });
    expect(await other.hasRuntime()).toBe(false);
    expect(await driver.imageExists(`assist-tee/no-such-image:${suffix}`)).toBe(false);
  });

  test('builds an image from a local context, and reports a failed build with its error', async () => {
    await writeFile(join(contextDir, 'hello.txt'), 'hello\n');
    await writeFile(join(contextDir, 'Dockerfile'), 'FROM scratch\nCOPY hello.txt /hello.txt\n');
    await driver.buildImage({ tag, contextDir, labels: { 'dev.assist-tee.test': suffix } });
    expect(await driver.imageExists(tag)).toBe(true);
    const image = await docker.getImage(tag).inspect();
    expect(image.Config.Labels).toMatchObject({ 'dev.assist-tee.test': suffix });

    await writeFile(join(contextDir, 'Dockerfile'), 'FROM scratch\nCOPY missing.txt /\n');
    await expect(driver.buildImage({ tag: `${tag}-broken`, contextDir })).rejects.toThrow(
      /building .*-broken failed: .*missing\.txt/s,
    );
  });

  test('tells gVisor runtimes from others', async () => {
    expect(await driver.runtimeProblems()).toEqual([]);
    const runc = new SandboxDriver({ docker, logger, runtime: 'runc', networkRuntime: 'runc' });
    const problems = (await runc.runtimeProblems()).join('\n');
    expect(problems).toContain(`runtime "runc" runs "runc", not gVisor's runsc`);
    expect(problems).toContain('runtime "runc" is not configured with --network=none');
    expect(problems).toContain('runtime "runc" is not configured with --network=host');
  });

  test('finds every sandbox rule a created container breaks, as the engine reports it', async () => {
    // Never started: the checks read the engine's record of the container, not the process.
    const container = await docker.createContainer({
      Image: tag,
      Cmd: ['/never-started'],
      Env: ['GIVEN=1', 'SERVICE_SECRET=x'],
      Labels: toDockerLabels(labels),
      HostConfig: {
        Runtime: 'runc',
        Privileged: true,
        CapAdd: ['NET_ADMIN'],
        Binds: ['/var/run/docker.sock:/var/run/docker.sock'],
        LogConfig: { Type: 'json-file', Config: {} },
        Tmpfs: { '/tmp': 'rw,size=1048576', '/scratch': 'rw,noexec' },
      },
    });
    try {
      const problems = sandboxProblems(await container.inspect(), {
        runtime: 'runsc',
        networkMode: 'none',
        user: SANDBOX_USER,
        env: ['GIVEN=1'],
      });
      expect(problems).toEqual([
        'runs under "runc", not "runsc"',
        'is privileged',
        'has a writable root filesystem',
        'keeps capabilities',
        'adds capabilities',
        'allows new privileges',
        'is on network "default", not "none"',
        'has no PID limit',
        'has no memory limit',
        'logs through "json-file"',
        'has a tmpfs at /scratch without a size cap',
        'runs as ""',
        'mounts the Docker socket (/var/run/docker.sock)',
        'has the environment variable SERVICE_SECRET',
      ]);
    } finally {
      await driver.removeContainer(container.id);
    }
  });

  test('volumes: create with labels, list, write files, remove idempotently', async () => {
    const name = `tee-test-${suffix}`;
    await driver.createVolume(name, { ...labels, environmentId: 'env-1' });
    const listed = await driver.listVolumes({
      instanceId: labels.instanceId,
      environmentId: 'env-1',
    });
    expect(listed.map((volume) => volume.name)).toEqual([name]);
    expect(listed[0]!.labels).toMatchObject({ 'dev.assist-tee.owner': 'test' });

    await driver.writeFiles({
      image: tag,
      volume: name,
      target: '/code',
      files: [{ path: 'lib/a.ts', content: 'export const a = 1;\n' }],
      labels,
    });
    // The writer container is gone again.
    expect(await driver.listContainers({ instanceId: labels.instanceId })).toEqual([]);

    const access = { image: tag, volume: name, target: '/code', labels };
    expect(await driver.readVolumeFile({ ...access, path: 'lib/a.ts', maxBytes: 100 })).toEqual(
      Buffer.from('export const a = 1;\n'),
    );
    expect(await driver.readVolumeFile({ ...access, path: 'nope.ts', maxBytes: 100 })).toBe(
      undefined,
    );
    await expect(
      driver.readVolumeFile({ ...access, path: 'lib/a.ts', maxBytes: 5 }),
    ).rejects.toThrow(/larger than 5 bytes/);
    await driver.writeFiles({
      ...access,
      files: [
        { path: 'b.ts', content: 'x'.repeat(1000) },
        { path: 'lib/c.ts', content: 'y' },
      ],
      owner: 'sandbox',
    });
    expect(
      await driver.volumeUsage({ ...access, stopAbove: { files: 100, bytes: 1 << 20 } }),
    ).toEqual({ files: 3, bytes: 20 + 1000 + 1 });
    // Counting stops once a cap is passed.
    expect(
      (await driver.volumeUsage({ ...access, stopAbove: { files: 1, bytes: 1 << 20 } })).files,
    ).toBe(2);
    expect(await driver.listContainers({ instanceId: labels.instanceId })).toEqual([]);

    await expect(
      driver.writeFiles({
        image: tag,
        volume: name,
        target: '/code',
        files: [{ path: '../escape.ts', content: '' }],
        labels,
      }),
    ).rejects.toThrow(/invalid file path/);

    await driver.removeVolume(name);
    await driver.removeVolume(name);
    expect(await driver.listVolumes({ instanceId: labels.instanceId })).toEqual([]);
  });

  test('a missing volume fails writes and starts instead of being created empty', async () => {
    const name = `tee-test-missing-${suffix}`;
    await expect(
      driver.writeFiles({ image: tag, volume: name, target: '/code', files: [], labels }),
    ).rejects.toBeInstanceOf(VolumeNotFoundError);
    await expect(
      driver.start({
        image: tag,
        // Never started: the volume check after the create fails first.
        cmd: ['/never-started'],
        env: [],
        volume: { name, target: '/code', readOnly: true },
        limits: { memoryBytes: 64 << 20, nanoCpus: 1e9, pidsLimit: 64, tmpfsBytes: 1 << 20 },
        labels,
      }),
    ).rejects.toBeInstanceOf(VolumeNotFoundError);
    expect(await driver.listVolumes({ instanceId: labels.instanceId })).toEqual([]);
  });

  // Deleting an environment while a sandbox of it is created can remove the volume before the
  // create; Docker then makes an empty one, marked as such.
  test('a volume Docker made in place of a vanished one is removed with the container', async () => {
    const name = `tee-test-recreated-${suffix}`;
    await docker.createVolume({
      Name: name,
      Labels: { ...toDockerLabels(labels), 'dev.assist-tee.recreated': 'true' },
    });
    await expect(
      new SandboxDriver({ docker, logger, runtime: 'runc' }).start({
        image: tag,
        cmd: ['/never-started'],
        env: [],
        volume: { name, target: '/code', readOnly: true },
        limits: { memoryBytes: 64 << 20, nanoCpus: 1e9, pidsLimit: 64, tmpfsBytes: 1 << 20 },
        labels,
      }),
    ).rejects.toBeInstanceOf(VolumeNotFoundError);
    expect(await driver.listContainers({ instanceId: labels.instanceId })).toEqual([]);
    expect(await driver.listVolumes({ instanceId: labels.instanceId })).toEqual([]);
  });

  test('a driver that requires gVisor starts nothing on another runtime', async () => {
    const runc = new SandboxDriver({ docker, logger, runtime: 'runc', requireGvisor: true });
    await expect(
      runc.start({
        image: tag,
        cmd: ['/never-started'],
        env: [],
        volume: { name: `tee-test-none-${suffix}`, target: '/code', readOnly: true },
        limits: { memoryBytes: 64 << 20, nanoCpus: 1e9, pidsLimit: 64, tmpfsBytes: 1 << 20 },
        labels,
      }),
    ).rejects.toThrow(/^refusing to run user code outside gVisor: runtime "runc" runs "runc"/);
    expect(await driver.listContainers({ instanceId: labels.instanceId })).toEqual([]);
    expect(await driver.listVolumes({ instanceId: labels.instanceId })).toEqual([]);
  });

  test('a sandbox that cannot start is removed before the error is rethrown', async () => {
    const name = `tee-test-start-${suffix}`;
    await driver.createVolume(name, labels);
    // runc, not runsc: a runsc start that fails leaves its state under the engine's runtime root
    // (`runsc list`), which only root can delete. What is tested here is the driver's cleanup.
    const runcDriver = new SandboxDriver({ docker, logger, runtime: 'runc' });
    try {
      // The command does not exist in the image: create succeeds, start fails.
      await expect(
        runcDriver.start({
          image: tag,
          cmd: ['/no/such/binary'],
          env: [],
          volume: { name, target: '/code', readOnly: true },
          limits: { memoryBytes: 64 << 20, nanoCpus: 1e9, pidsLimit: 64, tmpfsBytes: 1 << 20 },
          labels,
        }),
      ).rejects.toThrow(/starting the sandbox failed/);
      expect(await driver.listContainers({ instanceId: labels.instanceId })).toEqual([]);
    } finally {
      await driver.removeVolume(name);
    }
  });

  test('networks: created once, reused, refused when they exist with other settings', async () => {
    const name = `tee-test-net-${suffix}`;
    const bridge = `tee-t-${suffix}`;
    try {
      const first = await driver.ensureNetwork({ name, bridge, internal: true });
      expect(first).toMatchObject({ name, bridge });
      expect(first.gateway).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      expect(await driver.ensureNetwork({ name, bridge, internal: true })).toEqual(first);
      await expect(driver.ensureNetwork({ name, bridge, internal: false })).rejects.toThrow(
        /exists with other settings/,
      );
    } finally {
      await docker.getNetwork(name).remove();
    }
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { extract, pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLogger } from '@assist-tee/logger';
import {
  ArchiveOverCapError,
  createDockerClient,
  SANDBOX_ID,
  SandboxDriver,
  toDockerLabels,
  type SandboxLabels,
} from '../src/index.js';

// writeArchive against the engine: what a setup sandbox sends is not trusted.
const docker = createDockerClient({
  socketPath: process.env.TEE_DOCKER_SOCKET ?? '/var/run/docker.sock',
});
const logger = createLogger({ level: process.env.TEE_TEST_LOG_LEVEL ?? 'silent' });
const driver = new SandboxDriver({ docker, logger, runtime: 'runsc' });
const suffix = randomBytes(4).toString('hex');
const labels: SandboxLabels = { owner: 'test', instanceId: `test-archive-${suffix}` };
const tag = `assist-tee/archive-test:${suffix}`;
const volume = `tee-test-archive-${suffix}`;
const access = { image: tag, volume, target: '/code', labels };
const limits = { maxFiles: 10, maxBytes: 1000, owner: 'sandbox' as const };

beforeAll(async () => {
  const contextDir = await mkdtemp(join(tmpdir(), 'tee-archive-test-'));
  try {
    await writeFile(join(contextDir, 'Dockerfile'), 'FROM scratch\nCOPY Dockerfile /\n');
    await driver.buildImage({ tag, contextDir });
  } finally {
    await rm(contextDir, { recursive: true, force: true });
  }
});

afterAll(async () => {
  for (const container of await driver.listContainers({ instanceId: labels.instanceId })) {
    await driver.removeContainer(container.id);
  }
  for (const listed of await driver.listVolumes({ instanceId: labels.instanceId })) {
    await driver.removeVolume(listed.name);
  }
  await docker
    .getImage(tag)
    .remove({ force: true })
    .catch(() => undefined);
});

type Entry = {
  name: string;
  type: 'file' | 'directory' | 'symlink';
  mode?: number;
  content?: string;
};

/** A tar as a sandbox could send it: any modes, owners and types. */
function tarOf(entries: Entry[]): Readable {
  const archive = pack();
  for (const { content, ...header } of entries) {
    archive.entry({ uid: 0, gid: 0, linkname: '/etc/passwd', ...header }, content ?? '');
  }
  archive.finalize();
  return Readable.from(archive);
}

/** Every entry of the volume (its root as ''), with owner, mode and content, read through the engine. */
async function volumeTree(): Promise<Record<string, string>> {
  const container = await docker.createContainer({
    Image: tag,
    Entrypoint: ['/never-started'],
    Labels: toDockerLabels(labels),
    HostConfig: { Mounts: [{ Type: 'volume', Source: volume, Target: '/code' }] },
  });
  try {
    const entries = extract();
    (await container.getArchive({ path: '/code/.' })).pipe(entries);
    const tree: Record<string, string> = {};
    for await (const entry of entries) {
      const { uid, gid, mode = 0, type } = entry.header;
      const name = entry.header.name.replace(/^\.\//, '');
      let content = '';
      for await (const chunk of entry) content += (chunk as Buffer).toString('utf8');
      const described = `${type} ${uid}:${gid} ${(mode & 0o7777).toString(8)}`;
      tree[name] = type === 'file' ? `${described} ${content}` : described;
    }
    return tree;
  } finally {
    await container.remove({ force: true });
  }
}

describe('writeArchive', () => {
  beforeAll(() => driver.createVolume(volume, labels));
  afterAll(() => driver.removeVolume(volume));

  test('writes exactly the tree, owned by the sandbox user, files 0644 and directories 0755', async () => {
    const long = `node_modules/${'d'.repeat(90)}/${'f'.repeat(60)}.js`;
    const written = await driver.writeArchive({
      ...access,
      ...limits,
      archive: tarOf([
        { name: 'node_modules/', type: 'directory', mode: 0o777 },
        { name: 'node_modules/pkg/', type: 'directory', mode: 0o700 },
        { name: 'node_modules/pkg/index.js', type: 'file', mode: 0o4755, content: 'one' },
        { name: `node_modules/${'d'.repeat(90)}/`, type: 'directory', mode: 0o755 },
        { name: long, type: 'file', mode: 0o600, content: 'two!' },
      ]),
    });
    expect(written).toEqual({ files: 5, bytes: 7 });
    const sandbox = `${SANDBOX_ID}:${SANDBOX_ID}`;
    expect(await volumeTree()).toEqual({
      '': expect.stringMatching(/^directory /),
      'node_modules/': `directory ${sandbox} 755`,
      'node_modules/pkg/': `directory ${sandbox} 755`,
      'node_modules/pkg/index.js': `file ${sandbox} 644 one`,
      [`node_modules/${'d'.repeat(90)}/`]: `directory ${sandbox} 755`,
      [long]: `file ${sandbox} 644 two!`,
    });
    expect(await driver.listContainers({ instanceId: labels.instanceId })).toEqual([]);
  });

  test('stops at the byte and file caps, before the entry that would pass them', async () => {
    const before = await volumeTree();
    const tooBig = driver.writeArchive({
      ...access,
      ...limits,
      archive: tarOf([
        { name: 'a.js', type: 'file', content: 'x'.repeat(600) },
        { name: 'b.js', type: 'file', content: 'y'.repeat(401) },
      ]),
    });
    await expect(tooBig).rejects.toEqual(new ArchiveOverCapError('bytes'));
    const tooMany = driver.writeArchive({
      ...access,
      ...limits,
      archive: tarOf(
        Array.from({ length: 11 }, (_, i) => ({ name: `d${i}/`, type: 'directory' as const })),
      ),
    });
    await expect(tooMany).rejects.toEqual(new ArchiveOverCapError('files'));
    const after = await volumeTree();
    expect(Object.keys(after).filter((name) => !(name in before)).length).toBeLessThanOrEqual(10);
    expect(after['b.js']).toBeUndefined();
    expect(await driver.listContainers({ instanceId: labels.instanceId })).toEqual([]);
  });

  test('cuts off a stream that goes on past the cap plus tar overhead', async () => {
    // A header that claims a PAX record of 1 GB, then bytes without end.
    const header = Buffer.alloc(512);
    header.write('PaxHeader', 0);
    header.write('0000644\0', 100);
    header.write(`${(1 << 30).toString(8).padStart(11, '0')}\0`, 124);
    header.write('x', 156);
    header.write('ustar\u000000', 257);
    header.fill(' ', 148, 156);
    const sum = header.reduce((total, byte) => total + byte, 0);
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    let sent = 0;
    const endless = new Readable({
      read() {
        const chunk = sent === 0 ? header : Buffer.alloc(64 * 1024, 'a');
        sent += chunk.length;
        this.push(chunk);
      },
    });
    await expect(driver.writeArchive({ ...access, ...limits, archive: endless })).rejects.toEqual(
      new ArchiveOverCapError('bytes'),
    );
    // The cap, ten entries' overhead and the end of the archive, and what was in flight.
    expect(sent).toBeLessThan(1000 + 10 * 3 * 1024 + 10 * 1024 + 4 * 64 * 1024);
    expect(await driver.listContainers({ instanceId: labels.instanceId })).toEqual([]);
  });

  test('fails, without waiting forever, on an archive cut off inside an entry', async () => {
    const whole: Buffer[] = [];
    for await (const chunk of tarOf([{ name: 'cut.js', type: 'file', content: 'z'.repeat(900) }]))
      whole.push(chunk as Buffer);
    const cut = Readable.from([Buffer.concat(whole).subarray(0, 512 + 300)]);
    await expect(driver.writeArchive({ ...access, ...limits, archive: cut })).rejects.toThrow();
    expect(await driver.listContainers({ instanceId: labels.instanceId })).toEqual([]);
  });

  test('refuses links and paths out of the target', async () => {
    await expect(
      driver.writeArchive({
        ...access,
        ...limits,
        archive: tarOf([{ name: 'passwd', type: 'symlink' }]),
      }),
    ).rejects.toThrow(/symlink entry/);
    await expect(
      driver.writeArchive({
        ...access,
        ...limits,
        archive: tarOf([{ name: '../escape.js', type: 'file', content: '' }]),
      }),
    ).rejects.toThrow(/invalid file path/);
    expect((await volumeTree())['passwd']).toBeUndefined();
  });
});

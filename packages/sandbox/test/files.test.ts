import { extract, type Header } from 'tar-stream';
import { describe, expect, test } from 'vitest';
import { buildTar, validateFilePath } from '../src/index.js';

async function entries(tar: Buffer): Promise<{ header: Header; content: string }[]> {
  const result: { header: Header; content: string }[] = [];
  const reader = extract();
  const done = (async () => {
    for await (const entry of reader) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      result.push({ header: entry.header, content: Buffer.concat(chunks).toString('utf8') });
    }
  })();
  reader.end(tar);
  await done;
  return result;
}

describe('buildTar', () => {
  test('root-owned files 0644 under their 0755 parent directories', async () => {
    const tar = await buildTar([
      { path: 'main.ts', content: 'export {}' },
      { path: 'lib/deep/util.ts', content: Buffer.from('export const a = 1;') },
    ]);
    const list = await entries(tar);
    expect(
      list.map(({ header }) => [header.name, header.type, header.mode, header.uid, header.gid]),
    ).toEqual([
      ['lib/', 'directory', 0o755, 0, 0],
      ['lib/deep/', 'directory', 0o755, 0, 0],
      ['main.ts', 'file', 0o644, 0, 0],
      ['lib/deep/util.ts', 'file', 0o644, 0, 0],
    ]);
    expect(list[3]!.content).toBe('export const a = 1;');
  });

  test('refuses duplicates and a path that is both a file and a directory', async () => {
    await expect(
      buildTar([
        { path: 'a.ts', content: '' },
        { path: 'a.ts', content: '' },
      ]),
    ).rejects.toThrow(/duplicate/);
    await expect(
      buildTar([
        { path: 'a', content: '' },
        { path: 'a/b.ts', content: '' },
      ]),
    ).rejects.toThrow(/both a file and a directory/);
  });
});

describe('validateFilePath', () => {
  test.each(['main.ts', 'lib/util.ts', 'a/b/c.json', '.hidden.ts', 'x..y.ts'])(
    'accepts %s',
    (path) => {
      expect(() => validateFilePath(path)).not.toThrow();
    },
  );

  test.each([
    '',
    '/etc/passwd',
    '../escape.ts',
    'lib/../../escape.ts',
    'lib/./util.ts',
    'lib//util.ts',
    'lib/',
    'back\\slash.ts',
    'nul\u0000.ts',
    'new\nline.ts',
    'x'.repeat(1025),
  ])('rejects %j', (path) => {
    expect(() => validateFilePath(path)).toThrow(/invalid file path/);
  });
});

import { pack } from 'tar-stream';

export interface SandboxFile {
  /** Relative POSIX path under the target directory, e.g. `main.ts` or `lib/utils.ts`. */
  path: string;
  content: string | Buffer;
}

const MAX_PATH_LENGTH = 1024;

/**
 * Rejects anything but a plain relative path: absolute paths, `.`/`..` segments, empty
 * segments, backslashes and control characters. The environment service validates first;
 * this is the last check before bytes land in a volume.
 */
export function validateFilePath(path: string): void {
  const problem =
    path.length === 0
      ? 'is empty'
      : path.length > MAX_PATH_LENGTH
        ? `is longer than ${MAX_PATH_LENGTH} characters`
        : path.startsWith('/')
          ? 'is absolute'
          : // eslint-disable-next-line no-control-regex
            /[\\\u0000-\u001f\u007f]/.test(path)
            ? 'contains a backslash or a control character'
            : path.split('/').some((part) => part === '' || part === '.' || part === '..')
              ? 'has an empty, "." or ".." segment'
              : undefined;
  if (problem !== undefined)
    throw new Error(`invalid file path ${JSON.stringify(path)}: ${problem}`);
}

/**
 * An in-memory tar of the files, with their parent directories: root-owned, files 0644,
 * directories 0755, so the sandbox user can read but never change them.
 */
export async function buildTar(files: SandboxFile[]): Promise<Buffer> {
  const fileSet = new Set<string>();
  const dirs = new Set<string>();
  for (const file of files) {
    validateFilePath(file.path);
    if (fileSet.has(file.path)) throw new Error(`duplicate file path ${JSON.stringify(file.path)}`);
    fileSet.add(file.path);
    const parts = file.path.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const dir of dirs) {
    if (fileSet.has(dir)) throw new Error(`${JSON.stringify(dir)} is both a file and a directory`);
  }

  const mtime = new Date();
  const archive = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of archive) chunks.push(chunk as Buffer);
  })();
  const owner = { uid: 0, gid: 0, uname: 'root', gname: 'root', mtime };
  // Parents before children: sorting puts "a" before "a/b".
  for (const dir of [...dirs].sort()) {
    archive.entry({ ...owner, name: `${dir}/`, type: 'directory', mode: 0o755 });
  }
  for (const file of files) {
    archive.entry({ ...owner, name: file.path, type: 'file', mode: 0o644 }, file.content);
  }
  archive.finalize();
  await collected;
  return Buffer.concat(chunks);
}

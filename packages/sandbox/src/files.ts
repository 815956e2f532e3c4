import { pack } from 'tar-stream';

export interface SandboxFile {
  /** Relative POSIX path under the target directory, e.g. `main.ts` or `lib/utils.ts`. */
  path: string;
  content: string | Buffer;
}

const MAX_PATH_LENGTH = 1024;
/** Uid and gid of the unprivileged sandbox user, the same in every runtime image. */
export const SANDBOX_ID = 1000;

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
 * An in-memory tar of the files, with their parent directories: files 0644, directories 0755,
 * owned by root (the sandbox user can read but never change them) or by the sandbox user (a
 * setup sandbox installs dependencies next to them). With `root`, everything is under that
 * directory, which is in the tar too: the way to set the owner of a volume's root, since the
 * engine skips a "./" entry.
 */
export async function buildTar(
  files: SandboxFile[],
  ownedBy: 'root' | 'sandbox' = 'root',
  root?: string,
): Promise<Buffer> {
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
  const owner = ownerHeader(ownedBy, mtime);
  const prefix = root === undefined ? '' : `${root}/`;
  if (root !== undefined) {
    validateFilePath(root);
    archive.entry({ ...owner, name: prefix, type: 'directory', mode: 0o755 });
  }
  // Parents before children: sorting puts "a" before "a/b".
  for (const dir of [...dirs].sort()) {
    archive.entry({ ...owner, name: `${prefix}${dir}/`, type: 'directory', mode: 0o755 });
  }
  for (const file of files) {
    archive.entry(
      { ...owner, name: `${prefix}${file.path}`, type: 'file', mode: 0o644 },
      file.content,
    );
  }
  archive.finalize();
  await collected;
  return Buffer.concat(chunks);
}

/** Tar header fields for files written as root or as the sandbox user. */
export function ownerHeader(ownedBy: 'root' | 'sandbox', mtime: Date) {
  return ownedBy === 'root'
    ? { uid: 0, gid: 0, uname: 'root', gname: 'root', mtime }
    : { uid: SANDBOX_ID, gid: SANDBOX_ID, uname: 'sandbox', gname: 'sandbox', mtime };
}

// The setup script: a setup sandbox runs it with the runtime's own binary, as
// `/runner/setup.ts <request JSON>` (the image has no shell). The messages are defined in
// ../src/setup-protocol.ts. It writes the generated manifest into the install directory (a
// size-capped tmpfs that no module reaches, so no uploaded file is read as configuration), runs
// the package manager there, counts what it installed against the file and byte caps, and only
// then writes it to stdout as a tar, after the result line: the host puts it into the
// environment's volume (this sandbox never mounts it), so the host's disk never holds more than
// the caps, not even while the install runs. One stream out is far faster than a round trip to
// gVisor's file proxy for every file. Symlinks (node_modules/.bin) are neither followed nor sent.
// The package manager's output goes to stderr.
import { spawn } from 'node:child_process';
import {
  closeSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import type { SetupRequest, SetupResult } from '../src/setup-protocol.ts';

// What package managers print when a write fails on a full filesystem.
const NO_SPACE = /ENOSPC|No space left on device|os error 28/;
const OUTPUT_TAIL = 64 * 1024;
// stdout is written in chunks of about this size: few writes, little memory.
const CHUNK_BYTES = 1024 * 1024;
const BLOCK = 512;

type Tree = { directories: string[]; files: { path: string; size: number }[]; bytes: number };

const request = JSON.parse(process.argv.at(-1)!) as SetupRequest;
const { result, tree } = await setUp(request);
const output = chunkedStdout();
await output.write(Buffer.from(`${JSON.stringify(result)}\n`));
if (tree !== undefined) await writeTar(output, request.installDir, tree);
await output.flush();

async function setUp(request: SetupRequest): Promise<{ result: SetupResult; tree?: Tree }> {
  try {
    for (const file of request.files) {
      const path = join(request.installDir, file.path);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, file.content);
    }
  } catch (error) {
    // Under a tiny cap even the manifest may not fit.
    if ((error as { code?: unknown }).code === 'ENOSPC')
      return { result: { outcome: 'over-cap', cap: 'bytes' } };
    throw error;
  }
  const exit = await install(request);
  if (exit.code !== 0) {
    const result: SetupResult =
      exit.noSpace || diskFull(request.installDir)
        ? { outcome: 'over-cap', cap: 'bytes' }
        : { outcome: 'failed', exitCode: exit.code, signal: exit.signal };
    return { result };
  }
  // Counted first, in the tmpfs: an install over a cap leaves nothing in the volume. Nothing
  // runs any more to add files, and the tmpfs bounds the bytes of those listed.
  const tree = listTree(request.installDir, request);
  if (typeof tree === 'string') return { result: { outcome: 'over-cap', cap: tree } };
  const files = tree.directories.length + tree.files.length;
  return { result: { outcome: 'installed', files, bytes: tree.bytes }, tree };
}

/** Runs the package manager with the runtime's binary, its output passed on to stderr. */
function install(
  request: SetupRequest,
): Promise<{ code: number | null; signal: string | null; noSpace: boolean }> {
  const env: Record<string, string> = { ...process.env } as Record<string, string>;
  for (const entry of request.installEnv) {
    const equals = entry.indexOf('=');
    env[entry.slice(0, equals)] = entry.slice(equals + 1);
  }
  const child = spawn(process.execPath, request.install, {
    cwd: request.installDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const pass = (chunk: Buffer) => {
    process.stderr.write(chunk);
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL);
  };
  child.stdout.on('data', pass);
  child.stderr.on('data', pass);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, noSpace: NO_SPACE.test(tail) }));
  });
}

function diskFull(dir: string): boolean {
  const { bavail } = statfsSync(dir);
  return bavail === 0;
}

/**
 * The directories and regular files under `dir`, parents first, with the total size of the
 * files; stops at the first entry that would pass a cap and returns that cap instead.
 */
function listTree(
  dir: string,
  caps: { maxFiles: number; maxBytes: number },
): Tree | 'files' | 'bytes' {
  const tree: Tree = { directories: [], files: [], bytes: 0 };
  const walk = (relative: string): 'files' | 'bytes' | undefined => {
    for (const name of readdirSync(join(dir, relative)).sort()) {
      const path = join(relative, name);
      const stat = lstatSync(join(dir, path));
      if (!stat.isDirectory() && !stat.isFile()) continue;
      if (tree.directories.length + tree.files.length + 1 > caps.maxFiles) return 'files';
      if (stat.isDirectory()) {
        tree.directories.push(path);
        const over = walk(path);
        if (over !== undefined) return over;
      } else {
        if (tree.bytes + stat.size > caps.maxBytes) return 'bytes';
        tree.files.push({ path, size: stat.size });
        tree.bytes += stat.size;
      }
    }
    return undefined;
  };
  return walk('') ?? tree;
}

/**
 * The listed tree as a tar (ustar, with a PAX header for paths too long for it), directories
 * first. Modes and owners are placeholders: the host sets its own.
 */
async function writeTar(output: Output, dir: string, tree: Tree): Promise<void> {
  for (const path of tree.directories) await output.write(entryHeader(`${path}/`, '5', 0));
  for (const { path, size } of tree.files) {
    await output.write(entryHeader(path, '0', size));
    const fd = openSync(join(dir, path), 'r');
    try {
      for (let left = size; left > 0;) {
        const chunk = Buffer.allocUnsafe(Math.min(left, CHUNK_BYTES));
        const read = readSync(fd, chunk, 0, chunk.length, null);
        if (read === 0) throw new Error(`${path} is shorter than it was listed`);
        await output.write(chunk.subarray(0, read));
        left -= read;
      }
    } finally {
      closeSync(fd);
    }
    await output.write(Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK));
  }
  // The end of the archive: two empty blocks.
  await output.write(Buffer.alloc(2 * BLOCK));
}

/** One entry's header blocks: a PAX 'x' header first when the path does not fit in ustar's. */
function entryHeader(path: string, type: '0' | '5', size: number): Buffer {
  const name = Buffer.from(path);
  if (name.length <= 100) return ustarHeader(name, type, size);
  // A PAX record is "<length> path=<path>\n", its length counting its own digits.
  const body = ` path=${path}\n`;
  const bodyBytes = Buffer.byteLength(body);
  let length = bodyBytes + String(bodyBytes).length;
  if (String(length).length > String(bodyBytes).length) length += 1;
  const record = Buffer.from(`${length}${body}`);
  const padding = Buffer.alloc((BLOCK - (record.length % BLOCK)) % BLOCK);
  // The ustar name of a PAX entry is only a fallback for readers without PAX.
  const fallback = name.subarray(name.length - 100);
  return Buffer.concat([
    ustarHeader(Buffer.from('PaxHeader'), 'x', record.length),
    record,
    padding,
    ustarHeader(fallback, type, size),
  ]);
}

function ustarHeader(name: Buffer, type: '0' | '5' | 'x', size: number): Buffer {
  const header = Buffer.alloc(BLOCK);
  name.copy(header, 0, 0, 100);
  const octal = (value: number, offset: number, width: number) =>
    header.write(`${value.toString(8).padStart(width - 1, '0')}\0`, offset, 'ascii');
  octal(type === '5' ? 0o755 : 0o644, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(size, 124, 12);
  octal(0, 136, 12);
  header.write(type, 156, 'ascii');
  header.write('ustar\u000000', 257, 'ascii');
  // The checksum is summed with its own field as spaces.
  header.fill(' ', 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return header;
}

interface Output {
  write(data: Buffer): Promise<void>;
  flush(): Promise<void>;
}

/** stdout, written in big chunks, each awaited: the sandbox's output is a pipe. */
function chunkedStdout(): Output {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    const data = Buffer.concat(pending);
    pending = [];
    pendingBytes = 0;
    await new Promise<void>((resolve, reject) =>
      process.stdout.write(data, (error) => (error ? reject(error) : resolve())),
    );
  };
  return {
    flush,
    async write(data) {
      pending.push(data);
      pendingBytes += data.length;
      if (pendingBytes >= CHUNK_BYTES) await flush();
    },
  };
}

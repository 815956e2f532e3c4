// The setup script: a setup sandbox runs it with the runtime's own binary, as
// `/runner/setup.ts <request JSON>` (the image has no shell). The messages are defined in
// ../src/setup-protocol.ts. It writes the generated manifest into the install directory (a
// size-capped tmpfs that no module reaches, so no uploaded file is read as configuration), runs
// the package manager there, counts what it installed against the file and byte caps, and only
// then copies it into the environment's volume: the host's disk never holds more than the caps,
// not even while the install runs. Symlinks (node_modules/.bin) are neither followed nor copied.
// The package manager's output goes to stderr; stdout is the result line.
import { spawn } from 'node:child_process';
import { copyFile } from 'node:fs/promises';
import { lstatSync, mkdirSync, readdirSync, statfsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import type { SetupRequest, SetupResult } from '../src/setup-protocol.ts';

// What package managers print when a write fails on a full filesystem.
const NO_SPACE = /ENOSPC|No space left on device|os error 28/;
const OUTPUT_TAIL = 64 * 1024;
// Each copy is a round trip to gVisor's file proxy: several in flight make it several times faster.
const COPY_CONCURRENCY = 16;

const request = JSON.parse(process.argv.at(-1)!) as SetupRequest;
const result = await setUp(request);
process.stdout.write(`${JSON.stringify(result)}\n`);

async function setUp(request: SetupRequest): Promise<SetupResult> {
  try {
    for (const file of request.files) {
      const path = join(request.installDir, file.path);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, file.content);
    }
  } catch (error) {
    // Under a tiny cap even the manifest may not fit.
    if ((error as { code?: unknown }).code === 'ENOSPC')
      return { outcome: 'over-cap', cap: 'bytes' };
    throw error;
  }
  const exit = await install(request);
  if (exit.code !== 0) {
    return exit.noSpace || diskFull(request.installDir)
      ? { outcome: 'over-cap', cap: 'bytes' }
      : { outcome: 'failed', exitCode: exit.code, signal: exit.signal };
  }
  // Counted first, in the tmpfs: an install over a cap leaves nothing in the volume. Nothing
  // runs any more to add files, and the tmpfs bounds the bytes of those listed.
  const tree = listTree(request.installDir, request);
  if (typeof tree === 'string') return { outcome: 'over-cap', cap: tree };
  await copyTree(tree, request.installDir, request.targetDir);
  const files = tree.directories.length + tree.files.length;
  return { outcome: 'installed', files, bytes: tree.bytes };
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
): { directories: string[]; files: string[]; bytes: number } | 'files' | 'bytes' {
  const tree = { directories: [] as string[], files: [] as string[], bytes: 0 };
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
        tree.files.push(path);
        tree.bytes += stat.size;
      }
    }
    return undefined;
  };
  return walk('') ?? tree;
}

/** Copies the listed tree, directories first, then files several at a time. */
async function copyTree(
  tree: { directories: string[]; files: string[] },
  from: string,
  to: string,
): Promise<void> {
  for (const path of tree.directories) mkdirSync(join(to, path), { recursive: true });
  let next = 0;
  const worker = async () => {
    while (next < tree.files.length) {
      const path = tree.files[next++]!;
      await copyFile(join(from, path), join(to, path));
    }
  };
  await Promise.all(Array.from({ length: COPY_CONCURRENCY }, worker));
}

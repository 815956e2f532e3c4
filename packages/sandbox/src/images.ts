import { readdir, readFile, lstat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type Docker from 'dockerode';
import { pack } from 'tar-stream';
import type { Logger } from '@assist-tee/logger';
import { isNotFound } from './errors.js';

export interface BuildImageOptions {
  tag: string;
  /** A directory with a Dockerfile at its root; sent to the engine as the build context. */
  contextDir: string;
  labels?: Record<string, string>;
}

export async function imageExists(docker: Docker, tag: string): Promise<boolean> {
  try {
    await docker.getImage(tag).inspect();
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/** Builds an image from a local context; no registry is involved. Rejects with the build's error text. */
export async function buildImage(
  docker: Docker,
  logger: Logger,
  options: BuildImageOptions,
): Promise<void> {
  const started = Date.now();
  const context = packDirectory(options.contextDir);
  const response = await docker.buildImage(context, {
    t: options.tag,
    labels: options.labels ?? {},
    rm: true,
    forcerm: true,
  });
  const output: string[] = [];
  let failure: string | undefined;
  await new Promise<void>((resolve, reject) => {
    let pending = '';
    response.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let newline: number;
      while ((newline = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line === '') continue;
        // A throw here would be uncaught (a stream listener): a line that is not the
        // engine's JSON (a proxy's error page, a cut connection) fails the build instead.
        let event: { stream?: string; error?: string };
        try {
          event = JSON.parse(line) as typeof event;
        } catch {
          failure ??= `the engine sent a line that is not JSON: ${line.slice(0, 200)}`;
          continue;
        }
        if (event.stream !== undefined) output.push(event.stream);
        if (event.error !== undefined) failure ??= event.error;
      }
    });
    response.on('end', resolve);
    response.on('error', reject);
  });
  if (failure !== undefined) {
    throw new Error(`building ${options.tag} failed: ${failure}\n${output.join('').trim()}`);
  }
  logger.info({ tag: options.tag, ms: Date.now() - started }, 'image built');
}

/**
 * The directory as an uncompressed tar stream with modes kept and owners reset to root.
 * Symlinks are refused: a build context here holds only real files.
 */
function packDirectory(root: string): NodeJS.ReadableStream {
  const archive = pack();
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const stat = await lstat(path);
      const header = {
        name: relative(root, path),
        mode: stat.mode & 0o7777,
        uid: 0,
        gid: 0,
        mtime: stat.mtime,
      };
      if (stat.isDirectory()) {
        archive.entry({ ...header, type: 'directory' });
        await walk(path);
      } else if (stat.isFile()) {
        const content = await readFile(path);
        await new Promise<void>((resolve, reject) => {
          archive.entry({ ...header, type: 'file' }, content, (error) =>
            error ? reject(error) : resolve(),
          );
        });
      } else {
        throw new Error(`build context entry ${path} is not a regular file or directory`);
      }
    }
  };
  void walk(root).then(
    () => archive.finalize(),
    (error: unknown) => archive.destroy(error as Error),
  );
  return archive as unknown as NodeJS.ReadableStream;
}

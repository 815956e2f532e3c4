import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where runsc keeps the state of the sandboxes the Docker engine started with it. */
export interface RunscHost {
  /** The runsc binary. */
  path: string;
  /** runsc's --root as the engine passes it (Docker's: /var/run/docker/runtime-runc/moby). */
  root: string;
}

export interface RunscSandbox {
  id: string;
  status: string;
  createdAt: Date;
}

// `runsc list`: ID PID STATUS BUNDLE CREATED OWNER, the owner often empty.
const LIST_LINE = /^(\S+)\s+(\d+)\s+(\S+)\s+(.*?)\s+(\d{4}-\d\d-\d\dT\S+)\s*(\S*)$/;

/** Every sandbox runsc has state for under the root, whatever Docker knows of it. */
export async function listRunscSandboxes(host: RunscHost): Promise<RunscSandbox[]> {
  const { stdout } = await run(host.path, ['--root', host.root, 'list']);
  return stdout
    .split('\n')
    .slice(1)
    .flatMap((line) => {
      const match = LIST_LINE.exec(line.trim());
      if (match === null) return [];
      return [{ id: match[1]!, status: match[3]!, createdAt: new Date(match[5]!) }];
    });
}

/**
 * Removes a sandbox that Docker no longer lists (a failed start can leave one: see
 * docs/host-facts.md):
 * runsc kills its sandbox and gofer processes and drops its state, then the containerd shim
 * that still waits on it is killed.
 */
export async function removeRunscSandbox(host: RunscHost, id: string): Promise<void> {
  await run(host.path, ['--root', host.root, 'delete', '--force', id]);
  for (const pid of await shimsOf(id)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}

/** containerd-shim processes started for this container id (`-id <id>` on their command line). */
async function shimsOf(id: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = await readFile(`/proc/${entry}/cmdline`, 'utf8').then(
      (text) => text.split('\0'),
      (): string[] => [],
    );
    const idAt = args.indexOf('-id');
    if (args[0]?.includes('containerd-shim') && idAt > 0 && args[idAt + 1] === id) {
      pids.push(Number(entry));
    }
  }
  return pids;
}

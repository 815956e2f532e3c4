import { spawn } from 'node:child_process';

/** Runs `nft` (the nftables package) with `args` and `input` on stdin; resolves with stdout. */
function runNft(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('nft', args);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'ENOENT'
          ? new Error('nft is not installed: install the nftables package', { cause: error })
          : error,
      );
    });
    child.on('close', (code) => {
      if (code === 0) return resolve(Buffer.concat(stdout).toString());
      const message = Buffer.concat(stderr).toString().trim();
      reject(new Error(`nft ${args.join(' ')} exited with ${code}: ${message}`));
    });
    // nft may exit before reading it all (a listing, a failure): its exit code tells.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

/** Applies a script of nft commands as one transaction: all of it takes effect, or none. */
export async function applyScript(commands: readonly string[]): Promise<void> {
  await runNft(['-f', '-'], `${commands.join('\n')}\n`);
}

/** `nft -j list ...` parsed; the objects of its `nftables` array. */
export async function listJson(what: string[]): Promise<Record<string, unknown>[]> {
  const parsed = JSON.parse(await runNft(['-j', 'list', ...what])) as { nftables?: unknown };
  return Array.isArray(parsed.nftables) ? (parsed.nftables as Record<string, unknown>[]) : [];
}

import type { Config } from '@assist-tee/config';
import type { Logger } from '@assist-tee/logger';
import type { InstallPlan } from '@assist-tee/runtime-core';
import { caBundleAccess, type SandboxDriver, type SandboxLabels } from '@assist-tee/sandbox';

export interface InstallTarget {
  image: string;
  volume: string;
  codeDir: string;
  labels: SandboxLabels;
  /** The network with a route out that setup sandboxes use. */
  network: string;
}

/** Setup failed because of what the caller asked for; the message is for them. */
export class InstallFailedError extends Error {
  override readonly name = 'InstallFailedError';
}

/** Install output kept for the error message: its tail says what went wrong. */
const OUTPUT_TAIL_BYTES = 4 * 1024;
const MAX_LOCKFILE_BYTES = 4 * 1024 * 1024;
const MiB = 1024 * 1024;

type SetupConfig = Config['setup'];

/** The registry and proxy settings every package manager reads. */
export function installEnvironment(setup: SetupConfig): string[] {
  const env = [
    `NPM_CONFIG_REGISTRY=${setup.npmRegistry}`,
    `BUN_CONFIG_REGISTRY=${setup.npmRegistry}`,
  ];
  for (const [name, value] of [
    ['HTTP_PROXY', setup.httpProxy],
    ['HTTPS_PROXY', setup.httpsProxy],
    ['NO_PROXY', setup.noProxy],
  ] as const) {
    if (value !== '') env.push(`${name}=${value}`, `${name.toLowerCase()}=${value}`);
  }
  return env;
}

/**
 * Runs the plan in a setup sandbox (network, writable volume, the install caps), then checks
 * the volume against its size and file caps and reads the lockfile. Throws InstallFailedError
 * with the tail of the install output when the install fails or goes past a cap. The sandbox
 * is always removed.
 */
export async function installDependencies(
  options: {
    driver: SandboxDriver;
    setup: SetupConfig;
    logger: Logger;
    /** Aborting kills the install; this then throws the abort reason. */
    signal: AbortSignal;
  },
  target: InstallTarget,
  plan: InstallPlan,
): Promise<{ lockfile: string }> {
  const { driver, setup, logger, signal } = options;
  if (plan.files.length > 0) {
    await driver.writeFiles({
      image: target.image,
      volume: target.volume,
      target: target.codeDir,
      files: plan.files,
      labels: target.labels,
      owner: 'sandbox',
    });
  }
  const started = Date.now();
  const ca = caBundleAccess(setup.caBundle);
  const sandbox = await driver.start({
    image: target.image,
    cmd: plan.cmd,
    env: [...plan.env, ...installEnvironment(setup), ...ca.env],
    volume: { name: target.volume, target: target.codeDir, readOnly: false },
    limits: {
      memoryBytes: setup.memoryMb * MiB,
      nanoCpus: 2_000_000_000,
      pidsLimit: 512,
      tmpfsBytes: setup.tmpfsMb * MiB,
    },
    labels: target.labels,
    network: target.network,
    files: ca.files,
  });
  let output = Buffer.alloc(0);
  const keep = (chunk: Buffer) => {
    output = Buffer.concat([output, chunk]);
    if (output.length > 2 * OUTPUT_TAIL_BYTES) output = output.subarray(-OUTPUT_TAIL_BYTES);
  };
  sandbox.stdout.on('data', keep);
  sandbox.stderr.on('data', keep);
  sandbox.stdin.end();
  let timedOut = false;
  const kill = () => {
    sandbox.kill().catch((error: unknown) => logger.warn({ err: error }, 'kill failed'));
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, setup.timeoutMs);
  if (signal.aborted) kill();
  signal.addEventListener('abort', kill, { once: true });
  try {
    const exit = await sandbox.exited;
    clearTimeout(timer);
    const tail = () => outputTail(output);
    logger.info({ exit, ms: Date.now() - started }, 'dependency install finished');
    signal.throwIfAborted();
    if (timedOut) {
      throw new InstallFailedError(
        `installing dependencies took longer than ${setup.timeoutMs} ms${tail()}`,
      );
    }
    if (exit.oomKilled) {
      throw new InstallFailedError(
        `installing dependencies ran out of memory (${setup.memoryMb} MB)${tail()}`,
      );
    }
    if (exit.exitCode !== 0) {
      throw new InstallFailedError(
        `installing dependencies failed with exit code ${exit.exitCode}${tail()}`,
      );
    }
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', kill);
    await sandbox.remove();
  }

  const caps = { files: setup.maxVolumeFiles, bytes: setup.maxVolumeBytes };
  const access = {
    image: target.image,
    volume: target.volume,
    target: target.codeDir,
    labels: target.labels,
  };
  const usage = await driver.volumeUsage({ ...access, stopAbove: caps });
  if (usage.files > caps.files) {
    throw new InstallFailedError(
      `the installed dependencies have more than ${caps.files} files (TEE_MAX_ENVIRONMENT_FILES)`,
    );
  }
  if (usage.bytes > caps.bytes) {
    throw new InstallFailedError(
      `the installed dependencies take more than ${caps.bytes} bytes (TEE_MAX_ENVIRONMENT_BYTES)`,
    );
  }
  const lockfile = await driver.readVolumeFile({
    ...access,
    path: plan.lockfile,
    maxBytes: MAX_LOCKFILE_BYTES,
  });
  if (lockfile === undefined) {
    throw new InstallFailedError(`the install wrote no lockfile (${plan.lockfile})`);
  }
  logger.info({ ...usage, ms: Date.now() - started }, 'dependencies installed');
  return { lockfile: lockfile.toString('utf8') };
}

function outputTail(output: Buffer): string {
  const text = output.subarray(-OUTPUT_TAIL_BYTES).toString('utf8').trim();
  // Package managers colour their errors; the message is read as plain text.
  // eslint-disable-next-line no-control-regex
  const plain = text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
  return plain === '' ? '' : `:\n${plain}`;
}

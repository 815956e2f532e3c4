import type { Config } from '@assist-tee/config';
import type { Logger } from '@assist-tee/logger';
import { inSpan } from '@assist-tee/tracing';
import {
  CODE_DIR,
  type InstallPlan,
  type SetupRequest,
  type SetupResult,
} from '@assist-tee/runtime-core';
import { SetupPhase } from '@assist-tee/proto';
import {
  ArchiveOverCapError,
  caBundleAccess,
  type SandboxDriver,
  type SandboxLabels,
  type VolumeUsage,
} from '@assist-tee/sandbox';
import { lineSplitter, plainText } from './output-lines.js';
import type { SetupReporter } from './progress.js';

export interface InstallTarget {
  image: string;
  volume: string;
  /** How the runtime's image runs its setup script, and with what environment. */
  setupCommand: string[];
  setupEnv: string[];
  /** What the volume holds already (the modules): the caps are for everything together. */
  modules: { files: number; bytes: number };
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
const MAX_RESULT_BYTES = 1024;
const MiB = 1024 * 1024;

type SetupConfig = Config['setup'];

/** How the setup script's output went: its result, and what of its tar reached the volume. */
interface Copied {
  result: SetupResult | undefined;
  written?: VolumeUsage;
  error?: Error;
}

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
 * Runs the plan in a setup sandbox (network, the install caps, no volume): the runtime's setup
 * script installs into a tmpfs no bigger than what the volume may still take, counts the result
 * against the caps and sends it on stdout as a tar, which goes into the volume as it arrives,
 * rewritten and counted again here (the sandbox is not trusted to keep to the caps). So a setup
 * never holds more of the host's disk than the caps, even while it runs (the tmpfs is memory,
 * and counts against the sandbox's memory limit on top of the install's own). Then reads the
 * lockfile, and returns it with what the install wrote to the volume.
 * Reports INSTALLING, each line of the package manager's output as it comes, and CHECKING once
 * the install is counted and its tar begins.
 * Throws InstallFailedError with the tail of the install output when the install fails or
 * reaches a cap. The sandbox is always removed.
 */
export function installDependencies(
  options: InstallOptions,
  target: InstallTarget,
  plan: InstallPlan,
): Promise<{ lockfile: string; installed: VolumeUsage }> {
  return inSpan('dependencies.install', {}, async (span) => {
    const result = await install(options, target, plan);
    span.setAttributes({ 'assist_tee.installed.bytes': result.installed.bytes });
    return result;
  });
}

interface InstallOptions {
  driver: SandboxDriver;
  setup: SetupConfig;
  logger: Logger;
  /** Aborting kills the install; this then throws the abort reason. */
  signal: AbortSignal;
  progress: Pick<SetupReporter, 'phase' | 'output'>;
}

async function install(
  options: InstallOptions,
  target: InstallTarget,
  plan: InstallPlan,
): Promise<{ lockfile: string; installed: VolumeUsage }> {
  const { driver, setup, logger, signal, progress } = options;
  const caps = { files: setup.maxVolumeFiles, bytes: setup.maxVolumeBytes };
  const budget = {
    files: caps.files - target.modules.files,
    bytes: caps.bytes - target.modules.bytes,
  };
  if (budget.files <= 0) throw new InstallFailedError(overCapMessage('files', caps));
  if (budget.bytes <= 0) throw new InstallFailedError(overCapMessage('bytes', caps));
  const request: SetupRequest = {
    files: plan.files,
    install: plan.install,
    installEnv: plan.installEnv,
    installDir: CODE_DIR,
    maxFiles: budget.files,
    maxBytes: budget.bytes,
  };
  const started = Date.now();
  progress.phase(SetupPhase.INSTALLING);
  const ca = caBundleAccess(setup.caBundle);
  const sandbox = await driver.start({
    image: target.image,
    cmd: [...target.setupCommand, JSON.stringify(request)],
    env: [...target.setupEnv, ...installEnvironment(setup), ...ca.env],
    scratch: { target: CODE_DIR, bytes: budget.bytes },
    limits: {
      memoryBytes: setup.memoryMb * MiB + budget.bytes,
      nanoCpus: 2_000_000_000,
      pidsLimit: 512,
      tmpfsBytes: setup.tmpfsMb * MiB,
    },
    labels: target.labels,
    network: target.network,
    files: ca.files,
  });
  let output = Buffer.alloc(0);
  const lines = lineSplitter((line) => progress.output(line));
  sandbox.stderr.on('data', (chunk: Buffer) => {
    lines.write(chunk);
    output = Buffer.concat([output, chunk]);
    if (output.length > 2 * OUTPUT_TAIL_BYTES) output = output.subarray(-OUTPUT_TAIL_BYTES);
  });
  sandbox.stderr.on('end', () => lines.end());
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
  // The result line, then (installed) the tar, into the volume while it comes: a failed copy
  // kills the sandbox, which would otherwise wait on its output.
  const copied = readResultLine(sandbox.stdout).then(async (result): Promise<Copied> => {
    if (result?.outcome !== 'installed') {
      sandbox.stdout.resume();
      return { result };
    }
    progress.phase(SetupPhase.CHECKING);
    try {
      const written = await driver.writeArchive({
        archive: sandbox.stdout,
        maxFiles: budget.files,
        maxBytes: budget.bytes,
        image: target.image,
        volume: target.volume,
        target: CODE_DIR,
        labels: target.labels,
        // As the modules' owner was set for a volume with dependencies; executions mount it
        // read-only anyway.
        owner: 'sandbox',
      });
      return { result, written };
    } catch (error) {
      kill();
      return { result, error: error as Error };
    }
  });
  let installed!: VolumeUsage;
  try {
    const exit = await sandbox.exited;
    clearTimeout(timer);
    const { result, written, error } = await copied;
    const tail = () => outputTail(output);
    logger.info({ exit, result, written, ms: Date.now() - started }, 'dependency install finished');
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
    // The sandbox's own count said yes, but it sent more than the caps.
    if (error instanceof ArchiveOverCapError) {
      throw new InstallFailedError(overCapMessage(error.cap, caps));
    }
    if (result?.outcome === 'over-cap') {
      throw new InstallFailedError(overCapMessage(result.cap, caps));
    }
    if (result?.outcome !== 'installed' || exit.exitCode !== 0) {
      const code =
        result?.outcome === 'failed' ? (result.exitCode ?? result.signal) : exit.exitCode;
      throw new InstallFailedError(
        `installing dependencies failed with exit code ${code}${tail()}`,
      );
    }
    if (error !== undefined) throw error;
    installed = written!;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', kill);
    await sandbox.remove();
  }

  const lockfile = await driver.readVolumeFile({
    image: target.image,
    volume: target.volume,
    target: CODE_DIR,
    labels: target.labels,
    path: plan.lockfile,
    maxBytes: MAX_LOCKFILE_BYTES,
  });
  if (lockfile === undefined) {
    throw new InstallFailedError(`the install wrote no lockfile (${plan.lockfile})`);
  }
  logger.info({ ...installed, ms: Date.now() - started }, 'dependencies installed');
  return { lockfile: lockfile.toString('utf8'), installed };
}

function overCapMessage(cap: 'files' | 'bytes', caps: { files: number; bytes: number }): string {
  return cap === 'files'
    ? `the installed dependencies have more than ${caps.files} files (TEE_MAX_ENVIRONMENT_FILES)`
    : `the installed dependencies take more than ${caps.bytes} bytes (TEE_MAX_ENVIRONMENT_BYTES)`;
}

/**
 * The setup script's result line, or undefined when it wrote none (it failed or was killed);
 * what follows it stays unread in `stdout`. The line is short: anything longer is not the
 * script's.
 */
function readResultLine(stdout: NodeJS.ReadableStream): Promise<SetupResult | undefined> {
  return new Promise((resolve) => {
    let head = Buffer.alloc(0);
    const done = (result: SetupResult | undefined) => {
      stdout.off('readable', onReadable);
      stdout.off('end', onEnd);
      resolve(result);
    };
    const onEnd = () => done(undefined);
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = stdout.read() as Buffer | null) !== null) {
        head = Buffer.concat([head, chunk]);
        const newline = head.indexOf('\n');
        if (newline !== -1) {
          if (newline + 1 < head.length) stdout.unshift(head.subarray(newline + 1));
          return done(parseResult(head.subarray(0, newline).toString('utf8')));
        }
        if (head.length > MAX_RESULT_BYTES) return done(undefined);
      }
    };
    stdout.on('readable', onReadable);
    stdout.on('end', onEnd);
  });
}

function parseResult(line: string): SetupResult | undefined {
  try {
    return JSON.parse(line) as SetupResult;
  } catch {
    return undefined;
  }
}

function outputTail(output: Buffer): string {
  const plain = plainText(output.subarray(-OUTPUT_TAIL_BYTES).toString('utf8').trim());
  return plain === '' ? '' : `:\n${plain}`;
}

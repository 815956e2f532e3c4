import { randomUUID } from 'node:crypto';
import { loadConfig } from '@assist-tee/config';
import { createLogger } from '@assist-tee/logger';
import { SetupPhase } from '@assist-tee/proto';
import { buildBunImage, bunRuntime } from '@assist-tee/runtime-bun';
import type { SandboxRuntime } from '@assist-tee/runtime-core';
import { buildDenoImage, denoRuntime } from '@assist-tee/runtime-deno';
import {
  createDockerClient,
  environmentVolumeName,
  SandboxDriver,
  type VolumeUsage,
} from '@assist-tee/sandbox';
import { removeLabelled, uniqueSuffix } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installDependencies } from '../src/setup/install-dependencies.js';

const docker = createDockerClient({
  socketPath: process.env.TEE_DOCKER_SOCKET ?? '/var/run/docker.sock',
});
const logger = createLogger({ level: process.env.TEE_TEST_LOG_LEVEL ?? 'silent' });
const driver = new SandboxDriver({
  docker,
  logger,
  runtime: process.env.TEE_SANDBOX_RUNTIME ?? 'runsc',
});
const config = loadConfig();
const suffix = uniqueSuffix();
const instanceId = `test-install-${suffix}`;
// A route out to the npm registry, as the service's setup network gives (its firewall rules are
// the service's start-up business, not what this file tests).
const network = { name: `tee-test-install-${suffix}`, bridge: `tee-i-${suffix}`, internal: false };
const main = { path: 'main.ts', content: 'export const handler = () => 1;\n' };
// On the registry these machines reach; no dependencies of their own. is-number is about 10 KB
// unpacked in 4 files, date-fns 3 about 22 MB in some 6,000.
const IS_NUMBER = 'is-number@7.0.0';
const DATE_FNS = 'date-fns@3.6.0';

interface Reported {
  phases: SetupPhase[];
  lines: string[];
}

beforeAll(async () => {
  await driver.ping();
  await Promise.all([buildDenoImage(driver, logger), buildBunImage(driver, logger)]);
  await driver.ensureNetwork(network);
});

afterAll(async () => {
  await removeLabelled(driver, { instanceId });
  await docker.getNetwork(network.name).remove();
});

/**
 * Installs `npm` into a fresh volume holding one module, under these caps; returns how it ended
 * and what the volume held then, and removes the volume.
 */
async function installUnder(
  runtime: SandboxRuntime,
  caps: { maxVolumeBytes: number; maxVolumeFiles: number },
  npm: string[],
  modules = [main],
): Promise<{ error?: Error; lockfile?: string; usage: VolumeUsage; reported: Reported }> {
  const environmentId = randomUUID();
  const volume = environmentVolumeName(environmentId);
  const labels = { owner: 'test', instanceId, environmentId };
  await driver.createVolume(volume, labels);
  const access = { image: runtime.image, volume, target: runtime.codeDir, labels };
  try {
    await driver.writeFiles({ ...access, files: modules, owner: 'sandbox' });
    const outcome: { error?: Error; lockfile?: string } = {};
    const reported: Reported = { phases: [], lines: [] };
    try {
      const { lockfile } = await installDependencies(
        {
          driver,
          setup: { ...config.setup, ...caps, timeoutMs: 120_000 },
          logger,
          signal: new AbortController().signal,
          progress: {
            phase: (phase) => reported.phases.push(phase),
            output: (line) => reported.lines.push(line),
          },
        },
        {
          image: runtime.image,
          volume,
          setupCommand: runtime.setupCommand,
          setupEnv: runtime.setupEnv,
          modules: {
            files: modules.length,
            bytes: modules.reduce((sum, module) => sum + module.content.length, 0),
          },
          labels,
          network: network.name,
        },
        runtime.installPlan({ npm, url: [] }),
      );
      outcome.lockfile = lockfile;
    } catch (error) {
      outcome.error = error as Error;
    }
    const unlimited = { files: Number.MAX_SAFE_INTEGER, bytes: Number.MAX_SAFE_INTEGER };
    const usage = await driver.volumeUsage({ ...access, stopAbove: unlimited });
    return { ...outcome, usage, reported };
  } finally {
    await driver.removeVolume(volume);
  }
}

describe.each([
  ['deno', denoRuntime],
  ['bun', bunRuntime],
])('installing on %s', (_, runtime) => {
  it('lands in the volume, at the paths executions use, within generous caps', async () => {
    const { error, lockfile, usage, reported } = await installUnder(
      runtime,
      { maxVolumeBytes: 64 * 1024 * 1024, maxVolumeFiles: 1000 },
      [IS_NUMBER],
    );
    expect(error).toBeUndefined();
    expect(lockfile).toContain('is-number');
    expect(usage.files).toBeGreaterThan(4);
    // The package manager's output, line by line, as WatchEnvironment streams it.
    expect(reported.phases).toEqual([SetupPhase.INSTALLING, SetupPhase.CHECKING]);
    expect(reported.lines.length).toBeGreaterThan(0);
    for (const line of reported.lines) {
      expect(line).not.toMatch(/[\n\r]/);
      expect(line).not.toContain('\u001b[');
    }
  });

  // Validation refuses these modules; were one to get through, the install still never reads it.
  it('installs from the generated manifest only, whatever config files the volume holds', async () => {
    const smuggled = JSON.stringify({ dependencies: { 'is-number': '7.0.0' } });
    const { error, lockfile } = await installUnder(
      runtime,
      { maxVolumeBytes: 64 * 1024 * 1024, maxVolumeFiles: 1000 },
      ['ms@2'],
      [
        main,
        { path: 'package.json', content: smuggled },
        { path: 'deno.json', content: JSON.stringify({ imports: { x: 'npm:is-number@7.0.0' } }) },
        { path: 'bunfig.toml', content: '[install]\nregistry = "https://registry.invalid/"\n' },
      ],
    );
    expect(error).toBeUndefined();
    expect(lockfile).toContain('ms@2');
    expect(lockfile).not.toContain('is-number');
  });

  it('stops at the size cap while the install writes: the volume never holds more', async () => {
    const cap = 1024 * 1024;
    const { error, usage } = await installUnder(
      runtime,
      { maxVolumeBytes: cap, maxVolumeFiles: 100_000 },
      [DATE_FNS],
    );
    expect(error?.message).toBe(
      `the installed dependencies take more than ${cap} bytes (TEE_MAX_ENVIRONMENT_BYTES)`,
    );
    // Only the module: the install filled its tmpfs, not the volume.
    expect(usage).toEqual({ files: 1, bytes: main.content.length });
  });

  it('counts files before it copies: an install over the file cap leaves nothing in the volume', async () => {
    const cap = 4;
    const { error, usage, reported } = await installUnder(
      runtime,
      { maxVolumeBytes: 64 * 1024 * 1024, maxVolumeFiles: cap },
      [IS_NUMBER],
    );
    expect(error?.message).toBe(
      `the installed dependencies have more than ${cap} files (TEE_MAX_ENVIRONMENT_FILES)`,
    );
    expect(usage).toEqual({ files: 1, bytes: main.content.length });
    // Refused in the sandbox: nothing came to check.
    expect(reported.phases).toEqual([SetupPhase.INSTALLING]);
  });
});

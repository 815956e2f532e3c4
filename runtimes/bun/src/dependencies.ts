import type { Dependencies, InstallPlan } from '@assist-tee/runtime-core';

/**
 * `bun add` in the code directory: node_modules, package.json and bun.lock land in the volume
 * next to the modules, where Bun's resolution finds them. --ignore-scripts: no lifecycle script
 * runs, whatever an uploaded package.json or a dependency's trustedDependencies say. The
 * package cache is in the setup sandbox's /tmp, so files are copied, not linked.
 */
export function bunInstallPlan(dependencies: Dependencies, bunfig: string): InstallPlan {
  if (dependencies.url.length > 0) {
    // Validation refuses this first; here it would be a bug.
    throw new Error('Bun cannot import modules by URL');
  }
  return {
    files: [],
    cmd: [
      // The image's config, not a bunfig.toml among the uploaded modules.
      `--config=${bunfig}`,
      'add',
      '--ignore-scripts',
      '--no-progress',
      '--backend=copyfile',
      '--save-text-lockfile',
      ...dependencies.npm,
    ],
    env: [
      'HOME=/tmp',
      'BUN_INSTALL_CACHE_DIR=/tmp/bun-cache',
      'NO_COLOR=1',
      'DO_NOT_TRACK=1',
      'PATH=/usr/bin',
    ],
    lockfile: 'bun.lock',
  };
}

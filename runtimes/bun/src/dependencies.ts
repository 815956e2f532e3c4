import { type Dependencies, type InstallPlan, parseNpmSpecifier } from '@assist-tee/runtime-core';

/** The package.json the service writes for an environment: its npm dependencies, nothing else. */
export function bunManifest(dependencies: Dependencies): string {
  const versions: Record<string, string> = {};
  for (const spec of dependencies.npm) {
    const parsed = parseNpmSpecifier(spec);
    if (typeof parsed === 'string') throw new Error(parsed);
    versions[parsed.name] = parsed.range ?? 'latest';
  }
  return `${JSON.stringify({ name: 'assist-tee-environment', private: true, dependencies: versions }, null, 2)}\n`;
}

/**
 * `bun install` of a generated package.json: node_modules, package.json and bun.lock land in the
 * volume next to the modules, where Bun's resolution finds them. --ignore-scripts: no lifecycle
 * script runs, whatever a dependency's trustedDependencies say. The package cache is in the
 * setup sandbox's /tmp, so files are copied, not linked.
 */
export function bunInstallPlan(dependencies: Dependencies, bunfig: string): InstallPlan {
  if (dependencies.url.length > 0) {
    // Validation refuses this first; here it would be a bug.
    throw new Error('Bun cannot import modules by URL');
  }
  return {
    files: [{ path: 'package.json', content: bunManifest(dependencies) }],
    install: [
      // The image's config, never a bunfig.toml of the caller's.
      `--config=${bunfig}`,
      'install',
      '--ignore-scripts',
      '--no-progress',
      '--backend=copyfile',
      '--save-text-lockfile',
    ],
    // The setup sandbox's environment already has HOME, the cache and TMPDIR in /tmp.
    installEnv: [],
    lockfile: 'bun.lock',
  };
}

import { type Dependencies, type InstallPlan, parseNpmSpecifier } from '@assist-tee/runtime-core';

// Generated files live next to the modules in a directory no module path may use (module
// paths never start with "."); DENO_DIR is in the volume so executions find the cache there.
// The install writes these paths in the setup sandbox's install directory, and the setup
// script copies them into the volume.
export const DENO_DEPENDENCIES_DIR = '.assist-tee';
export const DENO_DEPENDENCY_CACHE_DIR = '/code/.deno';
const IMPORT_MAP = `/code/${DENO_DEPENDENCIES_DIR}/import_map.json`;
const LOCKFILE = `${DENO_DEPENDENCIES_DIR}/deno.lock`;

/**
 * `deno cache` of a generated module that imports every npm dependency, plus the URL
 * dependencies as roots, into DENO_DIR in the volume; the import map lets modules import a
 * dependency by its bare name as well as by its `npm:` specifier. npm lifecycle scripts never
 * run (Deno runs them only with --allow-scripts).
 */
export function denoInstallPlan(dependencies: Dependencies): InstallPlan {
  const imports: Record<string, string> = {};
  for (const spec of dependencies.npm) {
    const parsed = parseNpmSpecifier(spec);
    if (typeof parsed === 'string') throw new Error(parsed);
    imports[parsed.name] = `npm:${spec}`;
    imports[`${parsed.name}/`] = `npm:/${spec}/`;
  }
  const importAll = dependencies.npm.map((spec) => `import ${JSON.stringify(`npm:${spec}`)};\n`);
  return {
    files: [
      { path: `${DENO_DEPENDENCIES_DIR}/dependencies.ts`, content: importAll.join('') },
      { path: `${DENO_DEPENDENCIES_DIR}/import_map.json`, content: JSON.stringify({ imports }) },
    ],
    // Not --quiet: its "Download" lines are what WatchEnvironment shows of an install.
    install: [
      'cache',
      '--no-config',
      `--import-map=${IMPORT_MAP}`,
      `--lock=/code/${LOCKFILE}`,
      `/code/${DENO_DEPENDENCIES_DIR}/dependencies.ts`,
      ...dependencies.url,
    ],
    installEnv: [`DENO_DIR=${DENO_DEPENDENCY_CACHE_DIR}`],
    lockfile: LOCKFILE,
  };
}

/**
 * Run flags for an environment with dependencies: the import map, the lockfile checked
 * (--frozen: nothing resolves differently than at setup), everything from the cache only.
 */
export const DENO_DEPENDENCY_RUN_FLAGS = [
  `--import-map=${IMPORT_MAP}`,
  `--lock=/code/${LOCKFILE}`,
  '--frozen',
];

// Files a runtime or a package manager reads as configuration when it finds them in the code
// directory or any directory above a module. Both runtimes look them up from a module's own
// directory upward, so the name counts at any depth. A module with one of these names could
// add dependencies, registries, import maps or path aliases that validation never saw:
// dependencies are generated from dependencies.npm and dependencies.url, never uploaded.
// (Dot files, such as .npmrc, .env or .yarnrc, are refused by the path rule already.)
const READ_BY: ReadonlyMap<string, string> = new Map([
  ['package.json', 'npm, Bun and Deno'],
  ['package-lock.json', 'npm and Bun (which migrates it)'],
  ['npm-shrinkwrap.json', 'npm'],
  ['yarn.lock', 'Yarn and Bun (which migrates it)'],
  ['pnpm-lock.yaml', 'pnpm and Bun (which migrates it)'],
  ['pnpm-workspace.yaml', 'pnpm and Bun'],
  ['bun.lock', 'Bun'],
  ['bun.lockb', 'Bun'],
  ['bunfig.toml', 'Bun'],
  ['deno.json', 'Deno'],
  ['deno.jsonc', 'Deno'],
  ['deno.lock', 'Deno'],
  ['tsconfig.json', 'Bun and Deno (compilerOptions.paths)'],
  ['jsconfig.json', 'Bun and Deno (compilerOptions.paths)'],
]);

// Where package managers put, and runtimes resolve, installed packages.
const PACKAGES_DIRECTORY = 'node_modules';

/** Why a module may not have this (otherwise valid) path, or undefined when it may. */
export function manifestPathProblem(path: string): string | undefined {
  const segments = path.split('/');
  if (segments.includes(PACKAGES_DIRECTORY)) {
    return `is inside ${PACKAGES_DIRECTORY}, where Bun and Deno resolve installed packages; dependencies go in dependencies.npm`;
  }
  const name = segments.at(-1)!;
  const readers = READ_BY.get(name);
  if (readers === undefined) return undefined;
  return `${JSON.stringify(name)} is read by ${readers} as configuration; dependencies go in dependencies.npm`;
}

/** An environment's third-party code, as CreateEnvironment received it (validated). */
export interface Dependencies {
  /** npm specifiers: "date-fns@3", "@scope/name", "zod@^3.23". */
  npm: string[];
  /** https module URLs. */
  url: string[];
}

/** Whether there is anything to install (and so a cache or node_modules in the volume). */
export function hasDependencies(dependencies: Dependencies | undefined): boolean {
  return (dependencies?.npm.length ?? 0) + (dependencies?.url.length ?? 0) > 0;
}

/**
 * How a runtime installs dependencies: the package manager the setup script runs, in a setup
 * sandbox with network, in an install directory at CODE_DIR whose result it copies into the
 * volume (the paths an execution sees are the paths the install wrote).
 */
export interface InstallPlan {
  /** The generated manifest (dependency list, import map, …), relative to CODE_DIR. */
  files: { path: string; content: string }[];
  /** Arguments after the runtime's binary. */
  install: string[];
  /** The package manager's own environment, on top of the setup sandbox's. */
  installEnv: string[];
  /** Where the resolved lockfile lands, relative to the volume's root. */
  lockfile: string;
}

// npm's rules for new package names: lowercase, URL-safe, optional scope, at most 214 characters.
const PACKAGE_NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;
// A version, range or dist-tag: nothing that makes it a URL, a path, a git repo or an alias.
const VERSION_RANGE = /^[A-Za-z0-9.^~<>=|*+ -]{1,64}$/;

/** The package name and version range of an npm specifier, or a problem explaining why it is not one. */
export function parseNpmSpecifier(spec: string): { name: string; range?: string } | string {
  const at = spec.indexOf('@', 1);
  const name = at === -1 ? spec : spec.slice(0, at);
  const range = at === -1 ? undefined : spec.slice(at + 1);
  if (name.length > 214 || !PACKAGE_NAME.test(name)) {
    return `${JSON.stringify(spec)} is not an npm package specifier like "date-fns@3" or "@scope/name"`;
  }
  if (range !== undefined && !VERSION_RANGE.test(range)) {
    return `${JSON.stringify(spec)} has an unsupported version "${range}" (use a version, range or tag)`;
  }
  return range === undefined ? { name } : { name, range };
}

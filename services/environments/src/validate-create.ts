import { isIP } from 'node:net';
import type { Config } from '@assist-tee/config';
import { type CreateEnvironmentRequest, Runtime } from '@assist-tee/proto';
import { describeAddress, isPublicAddress, parseAllowNetEntry } from '@assist-tee/egress';
import { type Dependencies, parseNpmSpecifier } from '@assist-tee/runtime-core';
import { invalidArgument, validateLabels } from '@assist-tee/server';
import { manifestPathProblem } from './manifest-paths.js';

export interface ModuleFile {
  path: string;
  content: string;
}

export interface ValidCreateRequest {
  runtime: Runtime;
  mainModule: string;
  modules: ModuleFile[];
  modulesSizeBytes: number;
  dependencies: Dependencies;
  allowNet: string[];
  allowEnv: string[];
  /** With the server default filled in. */
  ttlSeconds: number;
}

type ModuleLimits = Config['modules'] &
  Config['environments'] &
  Pick<Config['setup'], 'maxDependencies'>;

const MAX_ALLOW_NET = 64;
const MAX_ALLOW_ENV = 64;
const MAX_URL_LENGTH = 2048;

// Module paths are relative, "/"-separated and made of plain names: nothing that could escape
// the code directory, hide a file, or mean something to a shell or a terminal.
const SEGMENT = /^[A-Za-z0-9_@+][A-Za-z0-9_.@+-]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Checks a CreateEnvironment request; throws InvalidArgument naming the first bad field. */
export function validateCreateRequest(
  request: CreateEnvironmentRequest,
  limits: ModuleLimits,
): ValidCreateRequest {
  if (request.runtime === Runtime.UNSPECIFIED) {
    throw invalidArgument('runtime', 'is required (RUNTIME_DENO or RUNTIME_BUN)');
  }
  if (request.runtime !== Runtime.DENO && request.runtime !== Runtime.BUN) {
    // protobuf-es keeps unknown enum numbers as numbers.
    throw invalidArgument(
      'runtime',
      `unknown runtime ${Number(request.runtime)}; use RUNTIME_DENO or RUNTIME_BUN`,
    );
  }
  if (request.ttlSeconds > limits.maxTtlSeconds) {
    throw invalidArgument(
      'ttl_seconds',
      `${request.ttlSeconds} is above the maximum of ${limits.maxTtlSeconds}`,
    );
  }
  const dependencies = validateDependencies(request, limits.maxDependencies);
  const allowNet = request.permissions?.allowNet ?? [];
  if (allowNet.length > MAX_ALLOW_NET) {
    throw invalidArgument(
      'permissions.allow_net',
      `at most ${MAX_ALLOW_NET} entries are allowed, got ${allowNet.length}`,
    );
  }
  allowNet.forEach((entry, index) => {
    const parsed = parseAllowNetEntry(entry);
    if (typeof parsed === 'string')
      throw invalidArgument(`permissions.allow_net[${index}]`, parsed);
  });
  const allowEnv = request.permissions?.allowEnv ?? [];
  if (allowEnv.length > MAX_ALLOW_ENV) {
    throw invalidArgument(
      'permissions.allow_env',
      `at most ${MAX_ALLOW_ENV} entries are allowed, got ${allowEnv.length}`,
    );
  }
  allowEnv.forEach((name, index) => {
    if (!ENV_NAME.test(name)) {
      throw invalidArgument(
        `permissions.allow_env[${index}]`,
        `${JSON.stringify(name)} is not a valid variable name`,
      );
    }
  });

  const entries = Object.entries(request.modules);
  if (entries.length === 0) throw invalidArgument('modules', 'at least one module is required');
  if (entries.length > limits.maxCount) {
    throw invalidArgument(
      'modules',
      `at most ${limits.maxCount} modules are allowed, got ${entries.length}`,
    );
  }
  let modulesSizeBytes = 0;
  const modules = entries.map(([path, content]) => {
    const field = `modules[${JSON.stringify(path)}]`;
    const problem = modulePathProblem(path, limits.maxPathLength) ?? manifestPathProblem(path);
    if (problem !== undefined) throw invalidArgument(field, problem);
    const size = Buffer.byteLength(content, 'utf8');
    if (size > limits.maxFileBytes) {
      throw invalidArgument(field, `is ${size} bytes; the maximum is ${limits.maxFileBytes}`);
    }
    modulesSizeBytes += size;
    return { path, content };
  });
  if (modulesSizeBytes > limits.maxTotalBytes) {
    throw invalidArgument(
      'modules',
      `total ${modulesSizeBytes} bytes; the maximum is ${limits.maxTotalBytes}`,
    );
  }
  assertNoFileDirectoryClash(modules.map((module) => module.path));
  validateLabels(request.labels);

  if (request.mainModule === '') throw invalidArgument('main_module', 'is required');
  if (!Object.hasOwn(request.modules, request.mainModule)) {
    throw invalidArgument(
      'main_module',
      `${JSON.stringify(request.mainModule)} is not one of the modules`,
    );
  }
  return {
    runtime: request.runtime,
    mainModule: request.mainModule,
    modules: modules.sort((a, b) => a.path.localeCompare(b.path)),
    modulesSizeBytes,
    dependencies,
    allowNet,
    allowEnv,
    ttlSeconds: request.ttlSeconds === 0 ? limits.defaultTtlSeconds : request.ttlSeconds,
  };
}

function validateDependencies(
  request: CreateEnvironmentRequest,
  maxDependencies: number,
): Dependencies {
  const npm = request.dependencies?.npm ?? [];
  const url = request.dependencies?.url ?? [];
  if (npm.length + url.length > maxDependencies) {
    throw invalidArgument(
      'dependencies',
      `at most ${maxDependencies} dependencies (npm and url together) are allowed, got ${npm.length + url.length}`,
    );
  }
  npm.forEach((spec, index) => {
    const parsed = parseNpmSpecifier(spec);
    if (typeof parsed === 'string') throw invalidArgument(`dependencies.npm[${index}]`, parsed);
  });
  if (url.length > 0 && request.runtime === Runtime.BUN) {
    throw invalidArgument(
      'dependencies.url',
      'RUNTIME_BUN cannot import modules by URL; use an npm package or RUNTIME_DENO',
    );
  }
  url.forEach((entry, index) => {
    const problem = moduleUrlProblem(entry);
    if (problem !== undefined) throw invalidArgument(`dependencies.url[${index}]`, problem);
  });
  return { npm: [...npm], url: [...url] };
}

/** Why `entry` is not an acceptable https module URL, or undefined when it is. */
export function moduleUrlProblem(entry: string): string | undefined {
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    return `${JSON.stringify(entry)} is not a URL`;
  }
  if (url.protocol !== 'https:') return `${JSON.stringify(entry)} must be an https URL`;
  if (url.username !== '' || url.password !== '') {
    return `${JSON.stringify(entry)} must not carry credentials`;
  }
  if (entry.length > MAX_URL_LENGTH) return `is longer than ${MAX_URL_LENGTH} characters`;
  if (url.href !== entry) {
    return `${JSON.stringify(entry)} is not in canonical form; use ${JSON.stringify(url.href)}`;
  }
  // The host must be a name or a public address; names are checked again where they resolve.
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) !== 0 && !isPublicAddress(host)) {
    return `${JSON.stringify(entry)} points at ${describeAddress(host)}`;
  }
  return undefined;
}

/** Why `path` is not an acceptable module path, or undefined when it is. */
export function modulePathProblem(path: string, maxLength: number): string | undefined {
  if (path === '') return 'path must not be empty';
  if (path.length > maxLength) return `path is longer than ${maxLength} characters`;
  if (path.startsWith('/')) return 'path must be relative, not absolute';
  if (path.includes('\\')) return 'path must use "/" as separator';
  // JavaScript treats this key of a plain object as its prototype (Object.assign, object
  // literals): somewhere between a client and the volume the module would silently vanish.
  if (path === '__proto__') return 'path must not be "__proto__"';
  for (const segment of path.split('/')) {
    if (segment === '') return 'path must not contain empty segments';
    if (segment === '..' || segment === '.') return `path must not contain "${segment}"`;
    if (!SEGMENT.test(segment)) {
      return `path segment ${JSON.stringify(segment)} may only contain letters, digits and _ . @ + - (and must not start with "." or "-")`;
    }
  }
  return undefined;
}

// "a" and "a/b" cannot both be files: one would have to be a directory.
function assertNoFileDirectoryClash(paths: string[]): void {
  const files = new Set(paths);
  for (const path of paths) {
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join('/');
      if (files.has(parent)) {
        throw invalidArgument(
          `modules[${JSON.stringify(parent)}]`,
          `is a file, but ${JSON.stringify(path)} needs it to be a directory`,
        );
      }
    }
  }
}

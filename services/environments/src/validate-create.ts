import type { Config } from '@assist-tee/config';
import { type CreateEnvironmentRequest, Runtime } from '@assist-tee/proto';
import { invalidArgument } from '@assist-tee/server';

export interface ModuleFile {
  path: string;
  content: string;
}

export interface ValidCreateRequest {
  runtime: Runtime;
  mainModule: string;
  modules: ModuleFile[];
  modulesSizeBytes: number;
  allowEnv: string[];
}

type ModuleLimits = Config['modules'];

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
    throw invalidArgument('runtime', 'is required (RUNTIME_DENO)');
  }
  if (request.runtime !== Runtime.DENO) {
    // protobuf-es keeps unknown enum numbers as numbers; BUN arrives with the setup issue.
    const name = Runtime[request.runtime] as string | undefined;
    throw invalidArgument(
      'runtime',
      name === undefined
        ? `unknown runtime ${request.runtime}`
        : `RUNTIME_${name} is not available yet; use RUNTIME_DENO`,
    );
  }
  const dependencies = request.dependencies;
  if ((dependencies?.npm.length ?? 0) > 0) {
    throw invalidArgument('dependencies.npm', 'dependencies are not supported yet');
  }
  if ((dependencies?.url.length ?? 0) > 0) {
    throw invalidArgument('dependencies.url', 'dependencies are not supported yet');
  }
  if ((request.permissions?.allowNet.length ?? 0) > 0) {
    throw invalidArgument('permissions.allow_net', 'network access is not supported yet');
  }
  const allowEnv = request.permissions?.allowEnv ?? [];
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
    const problem = modulePathProblem(path, limits.maxPathLength);
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

  if (request.mainModule === '') throw invalidArgument('main_module', 'is required');
  if (!(request.mainModule in request.modules)) {
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
    allowEnv,
  };
}

/** Why `path` is not an acceptable module path, or undefined when it is. */
export function modulePathProblem(path: string, maxLength: number): string | undefined {
  if (path === '') return 'path must not be empty';
  if (path.length > maxLength) return `path is longer than ${maxLength} characters`;
  if (path.startsWith('/')) return 'path must be relative, not absolute';
  if (path.includes('\\')) return 'path must use "/" as separator';
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

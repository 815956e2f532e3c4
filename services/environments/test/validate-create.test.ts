import { create, fromJsonString } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { loadConfig } from '@assist-tee/config';
import { CreateEnvironmentRequestSchema, Runtime } from '@assist-tee/proto';
import { describe, expect, it } from 'vitest';
import { modulePathProblem, validateCreateRequest } from '../src/validate-create.js';

const config = loadConfig({});
const limits = {
  ...config.modules,
  ...config.environments,
  maxDependencies: config.setup.maxDependencies,
};
const request = (fields: Parameters<typeof create<typeof CreateEnvironmentRequestSchema>>[1]) =>
  create(CreateEnvironmentRequestSchema, {
    runtime: Runtime.DENO,
    mainModule: 'main.ts',
    modules: { 'main.ts': 'export const handler = () => 1;' },
    ...fields,
  });

function rejection(fields: Parameters<typeof request>[0]): ConnectError {
  try {
    validateCreateRequest(request(fields), limits);
  } catch (error) {
    if (error instanceof ConnectError) return error;
    throw error;
  }
  throw new Error('expected the request to be rejected');
}

describe('validateCreateRequest', () => {
  it('accepts a valid request and sorts modules', () => {
    const valid = validateCreateRequest(
      request({ modules: { 'main.ts': 'import "./lib/u.ts"', 'lib/u.ts': 'x' } }),
      limits,
    );
    expect(valid.modules.map((m) => m.path)).toEqual(['lib/u.ts', 'main.ts']);
    expect(valid.modulesSizeBytes).toBe(20);
  });

  it.each([
    [{ modules: { '../etc/passwd': 'x', 'main.ts': 'x' } }, 'modules["../etc/passwd"]', '".."'],
    [{ modules: { '/etc/passwd': 'x', 'main.ts': 'x' } }, 'modules["/etc/passwd"]', 'absolute'],
    [{ modules: { '': 'x', 'main.ts': 'x' } }, 'modules[""]', 'empty'],
    [{ modules: { 'a//b.ts': 'x', 'main.ts': 'x' } }, 'modules["a//b.ts"]', 'empty segments'],
    [{ modules: { '.hidden.ts': 'x', 'main.ts': 'x' } }, 'modules[".hidden.ts"]', 'must not start'],
    [{ modules: { 'a\\b.ts': 'x', 'main.ts': 'x' } }, 'modules["a\\\\b.ts"]', 'separator'],
    [{ modules: {} }, 'modules', 'at least one'],
    [{ mainModule: 'missing.ts' }, 'main_module', 'not one of the modules'],
    [{ mainModule: '' }, 'main_module', 'required'],
    [{ runtime: Runtime.UNSPECIFIED }, 'runtime', 'required'],
    [{ runtime: 42 as Runtime }, 'runtime', 'unknown runtime 42'],
    [
      { modules: { main: 'x', 'main/x.ts': 'y' }, mainModule: 'main' },
      'modules["main"]',
      'directory',
    ],
    [{ dependencies: { npm: ['ok', 'git+ssh://x'], url: [] } }, 'dependencies.npm[1]', 'npm'],
    [
      { dependencies: { npm: [], url: ['https://A.example/x.ts'] } },
      'dependencies.url[0]',
      'canonical',
    ],
    [
      { dependencies: { npm: [], url: ['https://u:p@a.example/x.ts'] } },
      'dependencies.url[0]',
      'credentials',
    ],
    [{ dependencies: { npm: [], url: ['https://[::1]/x.ts'] } }, 'dependencies.url[0]', 'loopback'],
    [
      { runtime: Runtime.BUN, dependencies: { npm: [], url: ['https://a.example/x.ts'] } },
      'dependencies.url',
      'RUNTIME_BUN cannot import modules by URL',
    ],
    [
      { dependencies: { npm: Array.from({ length: 40 }, (_, i) => `p${i}`), url: [] } },
      'dependencies',
      'at most 32',
    ],
    [
      { permissions: { allowNet: ['example.com', '169.254.169.254'], allowEnv: [] } },
      'permissions.allow_net[1]',
      'link-local',
    ],
    [
      { permissions: { allowNet: [], allowEnv: ['BAD-NAME'] } },
      'permissions.allow_env[0]',
      'valid variable',
    ],
    [
      { permissions: { allowNet: [], allowEnv: Array.from({ length: 65 }, (_, i) => `V${i}`) } },
      'permissions.allow_env',
      'at most 64',
    ],
    [{ labels: { team: 'a\u0000b' } }, 'labels["team"]', 'control characters'],
    [{ labels: { team: 'x'.repeat(257) } }, 'labels["team"]', 'longer than 256'],
    [{ labels: { '../x': 'y' } }, 'labels["../x"]', 'a key is 1 to 63'],
    [{ labels: { ['k'.repeat(64)]: 'y' } }, `labels["${'k'.repeat(64)}"]`, 'a key is 1 to 63'],
    [
      { labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) },
      'labels',
      'at most 64',
    ],
  ])('rejects %j naming %s', (fields, field, problem) => {
    const error = rejection(fields);
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage.startsWith(`${field}: `)).toBe(true);
    expect(error.rawMessage).toContain(problem);
  });

  it('accepts dependencies and network permissions, and returns them', () => {
    const valid = validateCreateRequest(
      request({
        dependencies: { npm: ['date-fns@3', '@scope/pkg'], url: ['https://a.example/mod.ts'] },
        permissions: { allowNet: ['registry.npmjs.org', 'api.example.com:443'], allowEnv: [] },
      }),
      limits,
    );
    expect(valid.dependencies).toEqual({
      npm: ['date-fns@3', '@scope/pkg'],
      url: ['https://a.example/mod.ts'],
    });
    expect(valid.allowNet).toEqual(['registry.npmjs.org', 'api.example.com:443']);
  });

  it('rejects an oversized module and too many modules', () => {
    const big = 'x'.repeat(limits.maxFileBytes + 1);
    expect(rejection({ modules: { 'main.ts': big } }).rawMessage).toMatch(
      /^modules\["main.ts"\]: is \d+ bytes/,
    );
    const many = Object.fromEntries(
      Array.from({ length: limits.maxCount + 1 }, (_, i) => [`m${i}.ts`, '']),
    );
    expect(rejection({ modules: { ...many, 'main.ts': 'x' } }).rawMessage).toMatch(
      /^modules: at most/,
    );
  });
});

describe('modules a runtime or package manager reads as configuration', () => {
  it.each([
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
    ['lib/deep/package.json', 'npm, Bun and Deno'],
  ])('refuses %s at any depth, on both runtimes', (path, readers) => {
    const name = path.split('/').at(-1)!;
    for (const runtime of [Runtime.DENO, Runtime.BUN]) {
      const error = rejection({ runtime, modules: { 'main.ts': 'x', [path]: '{}' } });
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.rawMessage).toBe(
        `modules[${JSON.stringify(path)}]: ${JSON.stringify(name)} is read by ${readers} as configuration; dependencies go in dependencies.npm`,
      );
    }
  });

  it.each(['node_modules/is-number/index.js', 'lib/node_modules/x.ts'])(
    'refuses %s: installed packages are generated',
    (path) => {
      expect(rejection({ modules: { 'main.ts': 'x', [path]: 'x' } }).rawMessage).toBe(
        `modules[${JSON.stringify(path)}]: is inside node_modules, where Bun and Deno resolve installed packages; dependencies go in dependencies.npm`,
      );
    },
  );

  it('accepts names that only look alike', () => {
    const modules = {
      'main.ts': 'x',
      'package.ts': 'x',
      'lib/deno.json.ts': 'x',
      'node_modules.ts': 'x',
      'import_map.json': '{}',
    };
    expect(validateCreateRequest(request({ modules }), limits).modules).toHaveLength(5);
  });
});

describe('module map keys that are not plain names', () => {
  it('refuses a main module that is only on the prototype of the map', () => {
    for (const mainModule of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      const error = rejection({ mainModule });
      expect(error.rawMessage).toBe(
        `main_module: ${JSON.stringify(mainModule)} is not one of the modules`,
      );
    }
  });

  it('refuses a module named __proto__, as the JSON API decodes it', () => {
    const decoded = fromJsonString(
      CreateEnvironmentRequestSchema,
      '{"runtime":"RUNTIME_DENO","mainModule":"main.ts","modules":{"main.ts":"x","__proto__":"y"}}',
    );
    expect(Object.keys(decoded.modules)).toContain('__proto__');
    let refused: unknown;
    try {
      validateCreateRequest(decoded, limits);
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.InvalidArgument);
    expect((refused as ConnectError).rawMessage).toBe(
      'modules["__proto__"]: path must not be "__proto__"',
    );
  });
});

describe('modulePathProblem', () => {
  it.each(['main.ts', 'lib/utils.ts', 'a/b/c.mts', '@scope/x.js', 'v1.2/file-name_x.ts'])(
    'accepts %s',
    (path) => {
      expect(modulePathProblem(path, 255)).toBeUndefined();
    },
  );
  it.each(['..', 'a/../b', './a', 'a/./b', 'a\u0000b', 'a b', '-rf', 'a/\u001b[31m'])(
    'rejects %j',
    (path) => {
      expect(modulePathProblem(path, 255)).toBeDefined();
    },
  );
});

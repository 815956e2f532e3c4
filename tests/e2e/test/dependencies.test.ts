import { EnvironmentStatus, ExecutionStatus, Runtime } from '@assist-tee/client';
import { toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { collectEvents, listLabelled } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestStack } from '../src/index.js';

// is-number is tiny, has no dependencies of its own, and is on the npm registry, which these
// machines reach (through a TLS-intercepting proxy whose CA the setup sandbox is given).
const IS_NUMBER = 'is-number@7.0.0';
const IS_NUMBER_JSON = 'https://registry.npmjs.org/is-number/7.0.0';

describe('dependencies are installed at setup and used without network', () => {
  const tee = useTestStack();
  let events: Awaited<ReturnType<typeof collectEvents>>;
  beforeAll(async () => {
    events = await collectEvents(
      tee.stack.config.nats.servers,
      tee.stack.config.nats.subjectPrefix,
    );
  });
  afterAll(async () => {
    await events.stop();
  });

  async function execute(environmentId: string) {
    const { execution } = await tee.client.executions.execute({ environmentId });
    return execution!;
  }

  it('installs npm and URL dependencies for Deno and for Bun, concurrently', async () => {
    const [deno, bun] = await Promise.all([
      tee.client.environments.createEnvironment({
        runtime: Runtime.DENO,
        mainModule: 'main.ts',
        modules: {
          'main.ts': `
            import isNumber from "is-number";
            import isNumberAgain from "npm:is-number@7.0.0";
            import meta from "${IS_NUMBER_JSON}" with { type: "json" };
            export function handler() {
              return { bare: isNumber(5), npm: isNumberAgain("x"), name: meta.name };
            }`,
        },
        dependencies: { npm: [IS_NUMBER], url: [IS_NUMBER_JSON] },
      }),
      tee.client.environments.createEnvironment({
        runtime: Runtime.BUN,
        mainModule: 'main.ts',
        modules: {
          'main.ts': `
            import isNumber from "is-number";
            export function handler() { return { bare: isNumber(5), npm: isNumber("x") }; }`,
        },
        dependencies: { npm: [IS_NUMBER] },
      }),
    ]);
    for (const environment of [deno.environment!, bun.environment!]) {
      expect(environment.error).toBe('');
      expect(environment.status).toBe(EnvironmentStatus.READY);
      expect(environment.dependencies?.npm).toEqual([IS_NUMBER]);
      const { environment: stored } = await tee.client.environments.getEnvironment({
        id: environment.id,
      });
      expect(stored!.lockfile).toContain('is-number');
      expect(stored!.lockfile).toContain('7.0.0');
    }

    const denoRun = await execute(deno.environment!.id);
    expect(denoRun.error).toBeUndefined();
    expect(denoRun.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(toJson(ValueSchema, denoRun.result!)).toEqual({
      bare: true,
      npm: false,
      name: 'is-number',
    });
    const bunRun = await execute(bun.environment!.id);
    expect(bunRun.error).toBeUndefined();
    expect(bunRun.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(toJson(ValueSchema, bunRun.result!)).toEqual({ bare: true, npm: false });

    for (const environment of [deno.environment!, bun.environment!]) {
      await tee.client.environments.deleteEnvironment({ id: environment.id });
    }
  });

  it('marks a failed install FAILED with the output tail, publishes it, and leaves nothing', async () => {
    const missing = 'assist-tee-no-such-package-4c1d9e@1.0.0';
    const { environment } = await tee.client.environments.createEnvironment({
      runtime: Runtime.DENO,
      mainModule: 'main.ts',
      modules: { 'main.ts': 'export function handler() { return 1; }' },
      dependencies: { npm: [missing] },
    });
    expect(environment!.status).toBe(EnvironmentStatus.FAILED);
    expect(environment!.error).toMatch(/^installing dependencies failed with exit code \d+:\n/);
    expect(environment!.error).toContain('assist-tee-no-such-package-4c1d9e');
    await events.waitFor((seen) =>
      seen.some(
        (event) =>
          event.type === 'environment.failed' &&
          'environment' in event.message &&
          event.message.environment?.id === environment!.id,
      ),
    );
    const left = await listLabelled(tee.stack.process.infrastructure.sandbox, {
      environmentId: environment!.id,
    });
    expect(left).toEqual({ containers: [], volumes: [] });

    // Retrying with a good specifier works: nothing of the failed try is in the way.
    const retry = await tee.client.environments.createEnvironment({
      runtime: Runtime.DENO,
      mainModule: 'main.ts',
      modules: { 'main.ts': 'export function handler() { return 1; }' },
      dependencies: { npm: [IS_NUMBER] },
    });
    expect(retry.environment!.status).toBe(EnvironmentStatus.READY);
    await tee.client.environments.deleteEnvironment({ id: retry.environment!.id });
  });
});

describe('install caps', () => {
  const tee = useTestStack({ TEE_MAX_ENVIRONMENT_FILES: '3', TEE_SETUP_TIMEOUT_MS: '60000' });

  it('fails an environment whose installed files pass the file cap', async () => {
    const { environment } = await tee.client.environments.createEnvironment({
      runtime: Runtime.BUN,
      mainModule: 'main.ts',
      modules: { 'main.ts': 'export function handler() { return 1; }' },
      dependencies: { npm: [IS_NUMBER] },
    });
    expect(environment!.status).toBe(EnvironmentStatus.FAILED);
    expect(environment!.error).toBe(
      'the installed dependencies have more than 3 files (TEE_MAX_ENVIRONMENT_FILES)',
    );
    const left = await listLabelled(tee.stack.process.infrastructure.sandbox, {
      environmentId: environment!.id,
    });
    expect(left).toEqual({ containers: [], volumes: [] });
  });
});

describe('install wall time', () => {
  const tee = useTestStack({ TEE_SETUP_TIMEOUT_MS: '1000' });

  it('stops an install that takes longer than TEE_SETUP_TIMEOUT_MS', async () => {
    const started = Date.now();
    const { environment } = await tee.client.environments.createEnvironment({
      runtime: Runtime.DENO,
      mainModule: 'main.ts',
      modules: { 'main.ts': 'export function handler() { return 1; }' },
      dependencies: { npm: ['date-fns@3'] },
    });
    expect(environment!.status).toBe(EnvironmentStatus.FAILED);
    expect(environment!.error).toMatch(/^installing dependencies took longer than 1000 ms/);
    expect(Date.now() - started).toBeLessThan(15_000);
    const left = await listLabelled(tee.stack.process.infrastructure.sandbox, {
      environmentId: environment!.id,
    });
    expect(left).toEqual({ containers: [], volumes: [] });
  });
});

import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { fromJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ProcessTestBed,
  startFailingService,
  startProcessTestBed,
  sumExample,
} from '../src/index.js';

// The engine's plain runc in place of runsc: what a misconfigured host would give.
const RUNC = { TEE_SANDBOX_RUNTIME: 'runc', TEE_SANDBOX_NETWORK_RUNTIME: 'runc' };
const INSECURE = /^INSECURE: user code runs without the gVisor sandbox/;

describe('user code runs in gVisor or not at all', () => {
  let bed: ProcessTestBed;

  beforeAll(async () => {
    bed = await startProcessTestBed();
  });
  afterAll(() => bed?.tearDown());

  it('refuses to start the services that run user code on a runtime that is not runsc', async () => {
    for (const name of ['environments', 'execution']) {
      const { code, output } = await startFailingService(name, { ...bed.env, ...RUNC });
      expect(code, output).not.toBe(0);
      expect(output).toContain('refusing to run user code outside gVisor');
      expect(output).toContain('runtime "runc" runs "runc", not gVisor\'s runsc');
      expect(output).toContain('TEE_ALLOW_INSECURE_RUNTIME=1');
    }
  });

  it('runs with TEE_ALLOW_INSECURE_RUNTIME=1, saying so at start, in /healthz and with every run', async () => {
    const insecure = { ...RUNC, TEE_ALLOW_INSECURE_RUNTIME: '1' };
    const environments = await bed.start('environments', insecure);
    const execution = await bed.start('execution', {
      ...insecure,
      TEE_ENVIRONMENTS_URL: environments.url,
    });
    for (const service of [environments, execution]) {
      const warnings = () => service.logs.filter((l) => l.level === 40 && INSECURE.test(l.msg!));
      expect(warnings()).toHaveLength(1);
      const health = (await (await fetch(`${service.url}/healthz`)).json()) as {
        status: string;
        warnings?: string[];
      };
      expect(health.status).toBe('ok');
      expect(health.warnings).toEqual([expect.stringMatching(INSECURE)]);
    }

    const { environment } = await bed
      .client(environments.url)
      .environments.createEnvironment({ ...sumExample, runtime: Runtime.DENO });
    const executions = bed.client(execution.url).executions;
    for (const b of [1, 2]) {
      const { execution: run } = await executions.execute({
        environmentId: environment!.id,
        data: fromJson(ValueSchema, { a: 1, b }),
      });
      expect(run?.status).toBe(ExecutionStatus.SUCCEEDED);
    }
    const warned = execution.logs.filter((l) => l.level === 40 && INSECURE.test(l.msg!));
    expect(warned).toHaveLength(3); // at start, then once per execution
    expect(environments.logs.filter((l) => INSECURE.test(l.msg ?? ''))).toHaveLength(2);
  });
});

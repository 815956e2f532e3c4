import { EnvironmentStatus, ExecutionStatus, Runtime } from '@assist-tee/client';
import { type JsonObject, type JsonValue, toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { NAMED_RUNTIMES, useTestStack } from '../src/index.js';

// Runs in both runtimes: every probe reports what happened instead of throwing.
const PROBES = `
const text = (error: any) => String(error?.message ?? error);
const within = (promise: Promise<string>, ms = 4000) =>
  Promise.race([promise, new Promise<string>((resolve) => setTimeout(() => resolve("no answer"), ms))]);
const attempt = (run: () => Promise<unknown>) =>
  within(run().then((value) => "ok:" + value, (error) => "failed:" + text(error)));
const status = (url: string) => attempt(async () => (await fetch(url)).status);
async function connectRaw(hostname: string, port: number): Promise<string> {
  const g = globalThis as any;
  if (g.Deno) { (await g.Deno.connect({ hostname, port })).close(); return "connected"; }
  const socket = await g.Bun.connect({ hostname, port, socket: { data() {} } });
  socket.end();
  return "connected";
}
async function lookup(name: string): Promise<unknown> {
  const g = globalThis as any;
  return g.Deno ? g.Deno.resolveDns(name, "A") : g.Bun.dns.lookup(name);
}
export async function handler() {
  const proxy = new URL(process.env.HTTPS_PROXY ?? "http://unset");
  return {
    allowed: await status("https://registry.npmjs.org/is-number"),
    otherName: await status("https://example.com/"),
    otherNameHttp: await attempt(async () => (await fetch("http://example.com/")).text()),
    postgres: await status("http://127.0.0.1:5432/"),
    metadata: await status("http://169.254.169.254/latest/meta-data/"),
    decimal: await status("http://2130706433:5432/"),
    mapped: await status("http://[::ffff:169.254.169.254]/"),
    tcpOut: await attempt(() => connectRaw("1.1.1.1", 443)),
    tcpHostPostgres: await attempt(() => connectRaw(proxy.hostname, 5432)),
    dns: await attempt(() => lookup("example.com")),
  };
}
`;

const refused = /^(failed:|ok:403$|no answer$)/;
const text = (value: JsonValue | undefined) =>
  typeof value === 'string' ? value : JSON.stringify(value);

describe.each(NAMED_RUNTIMES)('network permissions on %s', (_, runtime) => {
  const tee = useTestStack();

  it('reaches only the hosts in allow_net, through the egress proxy', async () => {
    const { environment } = await tee.client.environments.createEnvironment({
      runtime,
      mainModule: 'main.ts',
      modules: { 'main.ts': PROBES },
      permissions: { allowNet: ['registry.npmjs.org'] },
    });
    expect(environment!.status).toBe(EnvironmentStatus.READY);
    const { execution } = await tee.client.executions.execute({
      environmentId: environment!.id,
      limits: { timeoutMs: 60_000 },
    });
    expect(execution!.error).toBeUndefined();
    expect(execution!.status).toBe(ExecutionStatus.SUCCEEDED);
    const result = toJson(ValueSchema, execution!.result!) as JsonObject;
    expect(result.allowed).toBe('ok:200');
    // Deno's own --allow-net refuses first; Bun has no permissions, so the proxy answers.
    expect(result.otherNameHttp).toMatch(
      runtime === Runtime.DENO
        ? /Requires net access to "example\.com(:80)?"/
        : /example\.com:80 is not in permissions\.allow_net/,
    );
    for (const probe of [
      'otherName',
      'postgres',
      'metadata',
      'decimal',
      'mapped',
      'tcpOut',
      'tcpHostPostgres',
      'dns',
    ]) {
      expect(`${probe}: ${text(result[probe])}`).toMatch(
        new RegExp(`^${probe}: ${refused.source.slice(1)}`),
      );
    }
    await tee.client.environments.deleteEnvironment({ id: environment!.id });
  });

  it('gives an environment without allow_net no network at all', async () => {
    const { environment } = await tee.client.environments.createEnvironment({
      runtime,
      mainModule: 'main.ts',
      modules: { 'main.ts': PROBES },
    });
    const { execution } = await tee.client.executions.execute({
      environmentId: environment!.id,
      limits: { timeoutMs: 60_000 },
    });
    expect(execution!.status).toBe(ExecutionStatus.SUCCEEDED);
    const result = toJson(ValueSchema, execution!.result!) as JsonObject;
    for (const [probe, outcome] of Object.entries(result)) {
      expect(`${probe}: ${text(outcome)}`).toMatch(new RegExp(`^${probe}: (failed:|no answer$)`));
    }
    await tee.client.environments.deleteEnvironment({ id: environment!.id });
  });
});

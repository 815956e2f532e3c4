import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '@assist-tee/config';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../../../', import.meta.url));

interface ComposeService {
  build?: { context: string; dockerfile: string };
  image?: string;
  environment?: Record<string, string>;
  volumes?: (string | { source: string; target: string })[];
  depends_on?: Record<string, { condition: string }>;
  network_mode?: string;
  cap_add?: string[];
  command?: string[];
  healthcheck?: { test: string[] };
}

// The stack cannot run here (no image registry), so it is validated instead: by docker-compose
// itself against the compose schema, then for what this project needs of it.
describe('docker-compose.yml', async () => {
  const { stdout } = await promisify(execFile)(
    'docker-compose',
    ['-f', 'docker-compose.yml', 'config'],
    // The key the services share comes from the shell (compose refuses to start without it).
    { cwd: root, env: { ...process.env, TEE_SERVICE_KEY: 'compose-test-key' } },
  );
  const compose = parse(stdout) as { services: Record<string, ComposeService> };
  const services = compose.services;

  it('describes the whole stack', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['environments', 'execution', 'images', 'nats', 'postgres', 'reaper'].sort(),
    );
  });

  it('builds each service from its own Dockerfile, which exists', () => {
    for (const name of ['environments', 'execution', 'reaper']) {
      const build = services[name]?.build;
      expect(build?.dockerfile).toBe(`services/${name}/Dockerfile`);
      expect(existsSync(`${root}services/${name}/Dockerfile`)).toBe(true);
    }
  });

  it('gives the services a configuration the config package accepts, with the Docker socket', () => {
    for (const name of ['environments', 'execution', 'reaper', 'images']) {
      const service = services[name]!;
      expect(() => loadConfig(service.environment ?? {})).not.toThrow();
      expect(service.environment?.TEE_SANDBOX_RUNTIME).toBe('runsc');
      expect(service.environment?.TEE_SERVICE_KEY).toBe('compose-test-key');
      const mounts = (service.volumes ?? []).map((v) =>
        typeof v === 'string' ? v : `${v.source}:${v.target}`,
      );
      expect(mounts.some((m) => m.startsWith('/var/run/docker.sock:/var/run/docker.sock'))).toBe(
        true,
      );
    }
  });

  it('starts NATS with JetStream and waits for the runtime images', () => {
    expect(JSON.stringify(services.nats)).toContain('-js');
    expect(services.execution?.depends_on?.images?.condition).toBe(
      'service_completed_successfully',
    );
    expect(services.environments?.depends_on?.images?.condition).toBe(
      'service_completed_successfully',
    );
  });

  it('lets the sandbox services set host firewall rules and serve the egress proxy on a bridge', () => {
    for (const name of ['environments', 'execution']) {
      expect(services[name]?.network_mode).toBe('host');
      expect(services[name]?.cap_add).toContain('NET_ADMIN');
    }
    expect(services.images?.command?.join(' ')).toMatch(/deno.*build-image.*bun.*build-image/);
  });

  it("marks each service healthy once it is ready, by a probe that runs on the image's node", async () => {
    // A stand-in for a service: ready, then not.
    let status = 200;
    const server = http.createServer((request, response) => {
      response.writeHead(request.url === '/readyz' ? status : 404);
      response.end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    try {
      for (const name of ['environments', 'execution', 'reaper']) {
        const [kind, command, ...args] = services[name]?.healthcheck?.test ?? [];
        expect([kind, command]).toEqual(['CMD', 'node']);
        const probe = () =>
          promisify(execFile)(process.execPath, args, { env: { TEE_PORT: String(port) } }).then(
            () => 0,
            (error: { code?: number }) => error.code,
          );
        status = 200;
        expect(await probe()).toBe(0);
        status = 503;
        expect(await probe()).toBe(1);
      }
    } finally {
      server.close();
    }
    expect(services.execution?.depends_on?.environments?.condition).toBe('service_healthy');
  });
});

import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { NAMED_RUNTIMES, useTestStack } from '@assist-tee/e2e';
import { describe, expect, it } from 'vitest';
import { probe } from '../src/index.js';

/** How a connection that has nowhere to go fails inside gVisor's network stack. */
const NO_ROUTE = /^(ECONNREFUSED|ENETUNREACH|EHOSTUNREACH|timeout)$/;

describe('the network', () => {
  const tee = useTestStack();

  describe.each(NAMED_RUNTIMES)('on %s', (_, runtime) => {
    const deno = runtime === Runtime.DENO;

    describe.concurrent('probes', () => {
      // Deno has no --allow-net at all; Bun's sandbox has no interface but loopback.
      it('without allow_net: no internet, metadata, DNS, host services or inbound', async () => {
        const api = new URL(tee.stack.url).port;
        const { execution, value } = await probe(
          tee,
          runtime,
          `const dns = await import('node:dns');
           const os = await import('node:os');
           const targets: Record<string, [string, number]> = {
             internet: ['1.1.1.1', 443], metadata: ['169.254.169.254', 80],
             loopbackPostgres: ['127.0.0.1', 5432], loopbackNats: ['127.0.0.1', 4222],
             gatewayPostgres: ['172.17.0.1', 5432], gatewayNats: ['172.17.0.1', 4222],
             gatewayApi: ['172.17.0.1', ${api}],
           };
           const connections: Record<string, unknown> = {};
           for (const [name, [host, port]] of Object.entries(targets))
             connections[name] = (await attempt(() => connect({ host, port }))).error;
           const get = (url: string) => attempt(async () => (await fetch(url, { signal: AbortSignal.timeout(3000) })).status);
           return {
             connections,
             fetch: await get('https://example.com'),
             metadataFetch: await get('http://169.254.169.254/latest/meta-data/'),
             dns: await attempt(() => dns.promises.lookup('example.com')),
             interfaces: await attempt(() => Object.keys(os.networkInterfaces())),
             listen: await attempt(() => typeof Deno !== 'undefined'
               ? Deno.listen({ port: 8081 }).addr
               : new Promise((resolve, reject) => {
                   const server = net.createServer();
                   server.on('error', reject);
                   server.listen(8081, () => { resolve('listening'); server.close(); });
                 })),
           };`,
        );
        expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
        const connections = Object.values(value.connections as Record<string, string>);
        expect(connections).toHaveLength(7);
        if (deno) {
          expect(value).toEqual({
            connections: expect.any(Object),
            fetch: { error: 'NotCapable' },
            metadataFetch: { error: 'NotCapable' },
            dns: { error: 'EPERM' },
            interfaces: { error: 'NotCapable' },
            listen: { error: 'NotCapable' },
          });
          for (const error of connections) expect(error).toBe('NotCapable');
          return;
        }
        for (const error of connections) expect(error).toMatch(NO_ROUTE);
        expect(value.fetch).toEqual({ error: 'EAI_AGAIN' });
        expect(value.metadataFetch.error).toMatch(NO_ROUTE);
        expect(value.dns).toEqual({ error: 'EAI_AGAIN' });
        // It may listen, but only loopback exists: nothing outside can connect to it.
        expect(value.interfaces).toEqual({ ok: ['lo'] });
        expect(value.listen).toEqual({ ok: 'listening' });
      });

      // With allow_net the sandbox is on the egress network, whose only open door is the proxy
      // on its gateway; the host's other ports there, and metadata, are closed by firewall rules.
      it('with allow_net: the egress proxy, and nothing else of the host', async () => {
        const api = new URL(tee.stack.url).port;
        const { execution, value } = await probe(
          tee,
          runtime,
          `const proxy = new URL(process.env.HTTPS_PROXY ?? process.env.https_proxy ?? '');
           const targets: Record<string, [string, number]> = {
             proxy: [proxy.hostname, Number(proxy.port)],
             gatewayPostgres: [proxy.hostname, 5432], gatewayNats: [proxy.hostname, 4222],
             gatewayApi: [proxy.hostname, ${api}], dockerGatewayPostgres: ['172.17.0.1', 5432],
             metadata: ['169.254.169.254', 80], internet: ['1.1.1.1', 443],
           };
           const out: Record<string, unknown> = {};
           for (const [name, [host, port]] of Object.entries(targets))
             out[name] = await attempt(() => connect({ host, port }));
           return out;`,
          { allowNet: ['example.com'] },
        );
        expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
        const { proxy, ...others } = value as Record<string, { ok?: string; error?: string }>;
        // Deno allows example.com only, not even the proxy's address; Bun reaches the proxy.
        expect(proxy).toEqual(deno ? { error: 'NotCapable' } : { ok: 'connected' });
        for (const [name, outcome] of Object.entries(others)) {
          expect(outcome.error, name).toMatch(deno ? /^NotCapable$/ : NO_ROUTE);
        }
      });
    });
  });
});

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { promisify } from 'node:util';
import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { denoRuntime } from '@assist-tee/runtime-deno';
import { uniqueSuffix } from '@assist-tee/testing';
import { toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestStack } from '../src/index.js';

const run = promisify(execFile);
const SETUP_NETWORK = { name: 'assist-tee-setup', bridge: 'tee-setup0', internal: false };
const ip = (...args: string[]) => run('ip', args);

// What a sandbox reports for each target: "connected"/"answered", or how it failed.
const PROBE = `
const dgram = await import('node:dgram');
const within = (promise, ms = 3000) =>
  Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve('no answer'), ms))]);
const tcp = (hostname, port) => within(new Promise((resolve) => {
  (globalThis.Deno
    ? Deno.connect({ hostname, port }).then((c) => { c.close(); return 'connected'; })
    : Bun.connect({ hostname, port, socket: { data() {} } }).then((s) => { s.end(); return 'connected'; })
  ).then(resolve, (error) => resolve(String(error?.code ?? error?.name ?? error)));
}));
const udp = (address, port) => within(new Promise((resolve) => {
  const socket = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
  socket.on('message', () => { socket.close(); resolve('answered'); });
  socket.on('error', (error) => resolve(String(error?.code ?? error)));
  socket.send('ping', port, address);
}));
const probe = async (targets) => {
  const out = {};
  for (const [name, [kind, host, port]] of Object.entries(targets))
    out[name] = await (kind === 'udp' ? udp(host, port) : tcp(host, port));
  return out;
};
`;

/**
 * A network namespace of this machine behind a veth pair, routed through the host like any
 * network: one listener on TCP and UDP port 53, at a private address (that the firewall
 * refuses from the setup network) and at a documentation one (that it lets through).
 */
async function startNamespaceListener() {
  const id = uniqueSuffix().slice(0, 6);
  const [namespace, hostSide] = [`tee-fw-${id}`, `tfw${id}`];
  const octet = Number.parseInt(id.slice(0, 2), 16);
  const quad = 4 * (octet % 63);
  const host = [`10.213.${octet}.1`, `198.51.100.${quad + 1}`];
  const inside = { private: `10.213.${octet}.2`, reachable: `198.51.100.${quad + 2}` };
  await ip('netns', 'add', namespace);
  let listener: ChildProcess | undefined;
  const stop = async () => {
    listener?.kill();
    if (listener && listener.exitCode === null) await once(listener, 'exit');
    await ip('netns', 'del', namespace);
  };
  try {
    await ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', namespace);
    await ip('addr', 'add', `${host[0]}/30`, 'dev', hostSide);
    await ip('addr', 'add', `${host[1]}/30`, 'dev', hostSide);
    await ip('link', 'set', hostSide, 'up');
    await ip('-n', namespace, 'addr', 'add', `${inside.private}/30`, 'dev', 'eth0');
    await ip('-n', namespace, 'addr', 'add', `${inside.reachable}/30`, 'dev', 'eth0');
    await ip('-n', namespace, 'link', 'set', 'eth0', 'up');
    await ip('-n', namespace, 'route', 'add', 'default', 'via', host[0]!);
    listener = spawn(
      'ip',
      [
        'netns',
        'exec',
        namespace,
        process.execPath,
        '-e',
        `const tcp = require('node:net').createServer((s) => s.end('dns')).listen(53);
         const udp = require('node:dgram').createSocket('udp4');
         udp.on('message', (m, from) => udp.send('dns', from.port, from.address));
         udp.bind(53, () => tcp.listening ? console.log('ready') : tcp.on('listening', () => console.log('ready')));`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      listener!.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) resolve();
      });
      listener!.on('exit', (code) => reject(new Error(`the listener exited with ${code}`)));
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { ...inside, stop };
}

/** A TCP listener on every address of the host, IPv4 and IPv6. */
async function startHostListener(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => socket.end('host'));
  server.listen({ port: 0, host: '::', ipv6Only: false });
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port };
}

/** The host's own IPv6 addresses outside loopback; link-local ones through a sandbox's eth0. */
const hostIPv6 = () => [
  ...new Set(
    Object.values(networkInterfaces())
      .flatMap((addresses) => addresses ?? [])
      .filter((address) => address.family === 'IPv6' && !address.internal)
      .map((address) => (address.scopeid ? `${address.address}%eth0` : address.address)),
  ),
];

// Real sandboxes against real listeners on this machine: nothing here leaves it.
describe('the host firewall, from inside sandboxes', () => {
  const tee = useTestStack();
  let namespace: Awaited<ReturnType<typeof startNamespaceListener>>;
  let host: Awaited<ReturnType<typeof startHostListener>>;

  beforeAll(async () => {
    [namespace, host] = await Promise.all([startNamespaceListener(), startHostListener()]);
  });
  afterAll(async () => {
    host?.server.close();
    await namespace?.stop();
  });

  /** Runs the probe in a sandbox on the setup network, as a dependency install runs. */
  async function probeFromSetupNetwork(targets: Record<string, [string, string, number]>) {
    const driver = tee.stack.process.infrastructure.sandbox;
    const labels = { owner: 'firewall-test', instanceId: tee.stack.config.instanceId };
    const volume = `assist-tee-firewall-test-${uniqueSuffix()}`;
    await driver.createVolume(volume, labels);
    try {
      const sandbox = await driver.start({
        image: denoRuntime.image,
        cmd: [
          'eval',
          // Exits at once: a socket that got no answer would keep it running.
          `${PROBE}\nconsole.log(JSON.stringify(await probe(${JSON.stringify(targets)})));\nDeno.exit(0);`,
        ],
        env: ['DENO_DIR=/tmp/deno', 'DENO_NO_UPDATE_CHECK=1'],
        volume: { name: volume, target: '/work', readOnly: false },
        limits: { memoryBytes: 512 << 20, nanoCpus: 1e9, pidsLimit: 512, tmpfsBytes: 64 << 20 },
        labels,
        network: 'assist-tee-setup',
      });
      let stdout = '';
      sandbox.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      sandbox.stdin.end();
      try {
        expect(await sandbox.exited).toEqual({ exitCode: 0, oomKilled: false });
      } finally {
        await sandbox.remove();
      }
      return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, string>;
    } finally {
      await driver.removeVolume(volume);
    }
  }

  it('lets a setup sandbox route to public addresses, but not to private ones, port 53 included', async () => {
    const { private: internal, reachable } = namespace;
    const seen = await probeFromSetupNetwork({
      reachableTcp: ['tcp', reachable, 53],
      reachableUdp: ['udp', reachable, 53],
      privateTcp: ['tcp', internal, 53],
      privateUdp: ['udp', internal, 53],
    });
    // The same listener answers at the address outside the blocked ranges: the route works.
    expect(seen).toEqual({
      reachableTcp: 'connected',
      reachableUdp: 'answered',
      privateTcp: expect.stringMatching(/^(ConnectionRefused|ECONNREFUSED)$/),
      privateUdp: expect.stringMatching(/^(no answer|ECONNREFUSED)$/),
    });
  });

  it("keeps a setup sandbox away from every one of the host's addresses, IPv6 included", async () => {
    const setup = await tee.stack.process.infrastructure.sandbox.ensureNetwork(SETUP_NETWORK);
    // Docker's default bridge is down while nothing uses it, but its address is the host's.
    const ipv4 = Object.values(networkInterfaces())
      .flatMap((addresses) => addresses ?? [])
      .filter((address) => address.family === 'IPv4' && !address.internal)
      .map((address) => address.address);
    const addresses = [...new Set([...ipv4, '172.17.0.1', ...hostIPv6()])];
    expect(addresses).toContain(setup.gateway);
    const targets = Object.fromEntries(
      addresses.map((address) => [address, ['tcp', address, host.port]]),
    ) as Record<string, [string, string, number]>;
    const seen = await probeFromSetupNetwork(targets);
    for (const [address, outcome] of Object.entries(seen)) {
      expect(outcome, address).not.toBe('connected');
    }
  });

  it("lets an egress sandbox reach the proxy and nothing else, the host's other ports, private DNS and IPv6 included", async () => {
    const { private: internal, reachable } = namespace;
    const ipv6 = hostIPv6();
    const { environment } = await tee.client.environments.createEnvironment({
      runtime: Runtime.BUN,
      mainModule: 'main.ts',
      modules: {
        'main.ts': `${PROBE}
export async function handler() {
  const port = ${host.port};
  const proxy = new URL(process.env.HTTPS_PROXY ?? '');
  return probe({
    proxy: ['tcp', proxy.hostname, Number(proxy.port)],
    hostPort: ['tcp', proxy.hostname, port],
    dockerGateway: ['tcp', '172.17.0.1', port],
    privateDns: ['udp', '${internal}', 53],
    privateDnsTcp: ['tcp', '${internal}', 53],
    reachable: ['tcp', '${reachable}', 53],
    ...Object.fromEntries(${JSON.stringify(ipv6)}.map((address: string) => [address, ['tcp', address, port]])),
  });
}`,
      },
      permissions: { allowNet: ['registry.npmjs.org'] },
    });
    try {
      const { execution } = await tee.client.executions.execute({
        environmentId: environment!.id,
        limits: { timeoutMs: 60_000 },
      });
      expect(execution!.error).toBeUndefined();
      expect(execution!.status).toBe(ExecutionStatus.SUCCEEDED);
      const { proxy, ...others } = toJson(ValueSchema, execution!.result!) as Record<
        string,
        string
      >;
      expect(proxy).toBe('connected');
      expect(Object.keys(others)).toHaveLength(5 + ipv6.length);
      for (const [target, outcome] of Object.entries(others)) {
        expect(outcome, target).not.toMatch(/^(connected|answered)$/);
      }
    } finally {
      await tee.client.environments.deleteEnvironment({ id: environment!.id });
    }
  });
});

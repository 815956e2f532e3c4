import { describe, expect, test } from 'vitest';
import { engineResolvers } from '../src/setup/resolvers.js';

const files = (contents: Record<string, string>) => (path: string) =>
  path in contents
    ? Promise.resolve(contents[path]!)
    : Promise.reject(Object.assign(new Error(path), { code: 'ENOENT' }));

describe('the resolvers a setup sandbox may reach', () => {
  test("are the host's nameservers, as the engine forwards to them", async () => {
    const read = files({
      '/etc/resolv.conf':
        '# generated\nnameserver 10.255.255.53\nnameserver fd00::53\noptions ndots:0\n',
    });
    expect(await engineResolvers(read)).toEqual(['10.255.255.53', 'fd00::53']);
  });

  test("are systemd-resolved's upstream servers behind its local stub", async () => {
    const read = files({
      '/etc/resolv.conf': 'nameserver 127.0.0.53\noptions edns0 trust-ad\n',
      '/run/systemd/resolve/resolv.conf': 'nameserver 10.0.0.2\nnameserver 192.168.1.1\n',
    });
    expect(await engineResolvers(read)).toEqual(['10.0.0.2', '192.168.1.1']);
  });

  test('leave out loopback servers and lines that are not addresses', async () => {
    const read = files({
      '/etc/resolv.conf':
        'nameserver 127.0.0.1\nnameserver ::1\nnameserver dns.example\n#nameserver 10.0.0.9\n',
    });
    expect(await engineResolvers(read)).toEqual([]);
  });

  test('are none when the host has no resolv.conf (the engine then uses public servers)', async () => {
    expect(await engineResolvers(files({}))).toEqual([]);
  });
});

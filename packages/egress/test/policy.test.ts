import ipaddr from 'ipaddr.js';
import { describe, expect, test } from 'vitest';
import {
  decideTarget,
  describeAddress,
  isPublicAddress,
  parseAllowNet,
  parseAllowNetEntry,
} from '../src/index.js';

describe('parseAllowNetEntry', () => {
  test.each([
    ['example.com', { host: 'example.com' }],
    ['API.Example.COM:443', { host: 'api.example.com', port: 443 }],
    ['example.com.', { host: 'example.com' }],
    ['registry.npmjs.org:1', { host: 'registry.npmjs.org', port: 1 }],
    ['a-b.c0.xn--p1ai:65535', { host: 'a-b.c0.xn--p1ai', port: 65535 }],
    ['localhost', { host: 'localhost' }],
    ['93.184.216.34', { host: '93.184.216.34' }],
    ['8.8.8.8:53', { host: '8.8.8.8', port: 53 }],
    ['[2606:4700:4700::1111]:443', { host: '2606:4700:4700::1111', port: 443 }],
    ['[2606:4700:4700:0:0:0:0:1111]', { host: '2606:4700:4700::1111' }],
  ])('accepts %s', (entry, expected) => {
    expect(parseAllowNetEntry(entry)).toEqual(expected);
  });

  test.each([
    '',
    '*',
    '*.example.com',
    'https://example.com',
    'example.com/path',
    'user@example.com',
    'user:pw@example.com',
    'example..com',
    '.example.com',
    'example.com:',
    'example.com:0',
    'example.com:65536',
    'example.com:443x',
    'example.com:+443',
    'example.com:443:443',
    ' example.com',
    'exa mple.com',
    'exa_mple.com',
    '-example.com',
    'example-.com',
    `${'a'.repeat(64)}.com`,
    'bücher.example',
    '2001:db8::1',
    '[2606:4700:4700::1111',
    '[2606:4700:4700::1111]x',
    '[example.com]:443',
    '[fe80::1%eth0]',
    'foo.1',
  ])('rejects %j as not a host or host:port', (entry) => {
    expect(parseAllowNetEntry(entry)).toMatch(/is not a host or host:port$/);
  });

  test.each([
    ['2130706433', 'decimal form'],
    ['0x7f.1', 'hex form'],
    ['0x7f000001', 'hex form'],
    ['0177.0.0.1', 'octal form'],
    ['127.1', 'short form'],
    ['1.2.3.04', 'octal form'],
    ['256.1.1.1', 'an invalid form'],
  ])('rejects the IPv4 spelling %s (%s)', (entry, form) => {
    expect(parseAllowNetEntry(entry)).toBe(
      `"${entry}" is an IPv4 address written in ${form}; only the dotted-quad form is accepted`,
    );
  });

  test.each([
    ['[::ffff:127.0.0.1]', 'IPv4-mapped'],
    ['[::ffff:7f00:1]', 'IPv4-mapped'],
    ['[::ffff:8.8.8.8]:443', 'IPv4-mapped'],
    ['[::127.0.0.1]', 'IPv4-compatible'],
    ['[::7f00:1]', 'IPv4-compatible'],
  ])('rejects the IPv6 spelling of IPv4 %s', (entry, form) => {
    expect(parseAllowNetEntry(entry)).toMatch(`is an ${form} IPv6 address`);
  });

  test.each([
    ['10.0.0.5', 'a private'],
    ['172.16.0.1:443', 'a private'],
    ['192.168.1.1', 'a private'],
    ['127.0.0.1', 'a loopback'],
    ['169.254.169.254', 'a link-local'],
    ['100.64.0.1', 'a carrier-grade NAT'],
    ['0.0.0.0', 'an unspecified'],
    ['255.255.255.255', 'a broadcast'],
    ['224.0.0.1', 'a multicast'],
    ['[::1]', 'a loopback'],
    ['[::]', 'an unspecified'],
    ['[fe80::1]', 'a link-local'],
    ['[fd00::1]:443', 'a unique-local'],
    ['[64:ff9b::a00:5]', 'a non-public (rfc6052)'],
    ['[2002:7f00:1::]', 'a non-public (6to4)'],
  ])('rejects the non-public address %s', (entry, kind) => {
    expect(parseAllowNetEntry(entry)).toBe(
      `${JSON.stringify(entry)} is ${kind} address; sandboxes may never reach it`,
    );
  });

  test('parseAllowNet parses a list and names every bad entry', () => {
    expect(parseAllowNet(['example.com', '8.8.8.8:53'])).toEqual([
      { host: 'example.com' },
      { host: '8.8.8.8', port: 53 },
    ]);
    expect(() => parseAllowNet(['ok.example', '*', '10.0.0.1'])).toThrow(
      'invalid allow_net: "*" is not a host or host:port; "10.0.0.1" is a private address',
    );
  });
});

describe('decideTarget', () => {
  const allowNet = parseAllowNet([
    'api.example.com:443',
    'any-port.example.com',
    '93.184.216.34:80',
    '[2606:4700:4700::1111]:443',
  ]);

  test('allows listed names case-insensitively, without the trailing dot', () => {
    for (const authority of [
      'api.example.com:443',
      'API.Example.Com:443',
      'api.example.com.:443',
    ]) {
      expect(decideTarget(allowNet, authority)).toEqual({
        allowed: true,
        host: 'api.example.com',
        port: 443,
        ip: false,
      });
    }
  });

  test('an entry with a port allows only that port; one without allows any', () => {
    expect(decideTarget(allowNet, 'api.example.com:80')).toEqual({
      allowed: false,
      reason: 'api.example.com:80 is not in permissions.allow_net',
    });
    expect(decideTarget(allowNet, 'any-port.example.com:8443')).toMatchObject({ allowed: true });
    expect(decideTarget(allowNet, 'any-port.example.com', 80)).toMatchObject({
      allowed: true,
      port: 80,
    });
  });

  test('matches the exact name only, never a subdomain or a suffix', () => {
    for (const authority of [
      'example.com:443',
      'x.api.example.com:443',
      'api.example.com.evil.test:443',
      'evilapi.example.com:443',
    ]) {
      expect(decideTarget(allowNet, authority)).toMatchObject({
        allowed: false,
        reason: expect.stringMatching(/is not in permissions\.allow_net$/),
      });
    }
  });

  test('an IP literal matches only the identical canonical IP entry', () => {
    expect(decideTarget(allowNet, '93.184.216.34:80')).toEqual({
      allowed: true,
      host: '93.184.216.34',
      port: 80,
      ip: true,
    });
    expect(decideTarget(allowNet, '[2606:4700:4700:0::1111]:443')).toEqual({
      allowed: true,
      host: '2606:4700:4700::1111',
      port: 443,
      ip: true,
    });
    expect(decideTarget(allowNet, '93.184.216.35:80')).toEqual({
      allowed: false,
      reason: '93.184.216.35:80 is not in permissions.allow_net',
    });
    expect(decideTarget(allowNet, '[2606:4700:4700::1111]:80')).toEqual({
      allowed: false,
      reason: '[2606:4700:4700::1111]:80 is not in permissions.allow_net',
    });
  });

  test.each([
    ['2130706433:443', 'decimal form'],
    ['0x7f.1:443', 'hex form'],
    ['0x5d.0xb8.0xd8.0x22:80', 'hex form'],
    ['0177.0.0.1:443', 'octal form'],
    ['127.1:443', 'short form'],
    ['1572395042:80', 'decimal form'],
  ])('refuses the IPv4 trick %s, naming it', (authority, form) => {
    expect(decideTarget(allowNet, authority)).toEqual({
      allowed: false,
      reason: expect.stringContaining(`is an IPv4 address written in ${form}`),
    });
  });

  test.each([
    ['[::ffff:127.0.0.1]:443', 'IPv4-mapped'],
    ['[::ffff:7f00:1]:443', 'IPv4-mapped'],
    ['[::ffff:93.184.216.34]:80', 'IPv4-mapped'],
    ['[0:0:0:0:0:ffff:5db8:d822]:80', 'IPv4-mapped'],
    ['[::127.0.0.1]:443', 'IPv4-compatible'],
  ])('refuses the IPv6 trick %s, naming it', (authority, form) => {
    expect(decideTarget(allowNet, authority)).toEqual({
      allowed: false,
      reason: expect.stringContaining(`is an ${form} IPv6 address`),
    });
  });

  test('refuses malformed authorities and a missing port', () => {
    expect(decideTarget(allowNet, 'api.example.com')).toEqual({
      allowed: false,
      reason: '"api.example.com" has no port',
    });
    for (const authority of ['', 'user@api.example.com:443', 'api.example.com:443/x', '[::1']) {
      expect(decideTarget(allowNet, authority)).toEqual({
        allowed: false,
        reason: expect.stringMatching(/is not a host or host:port$/),
      });
    }
  });
});

describe('isPublicAddress', () => {
  test.each(['93.184.216.34', '8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])(
    'allows the public unicast address %s',
    (address) => {
      expect(isPublicAddress(address)).toBe(true);
    },
  );

  test.each(['203.0.113.80', '192.0.2.1', '240.0.0.1', '2001:db8::1'])(
    'treats the reserved block address %s as reachable (a TLS-intercepting proxy may use one)',
    (address) => {
      expect(isPublicAddress(address)).toBe(true);
    },
  );

  test.each([
    '127.0.0.1',
    '127.255.255.254',
    '10.0.0.5',
    '172.31.255.255',
    '192.168.0.1',
    '169.254.169.254',
    '100.100.100.200',
    '0.0.0.0',
    '255.255.255.255',
    '224.0.0.251',
    '198.18.0.1',
    '::1',
    '::',
    'fe80::1',
    'fd00:ec2::254',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:169.254.169.254',
    '::7f00:1',
    '64:ff9b::a9fe:a9fe',
    '2002:a9fe:a9fe::',
    '2001:0:4136:e378:8000:63bf:3fff:fdd2',
    'not-an-address',
    '2130706433',
    '::1.2.3.4',
  ])('refuses %s', (address) => {
    expect(isPublicAddress(address)).toBe(false);
  });

  // The firewall blocks the same list: it must hold every block ipaddr.js names non-public.
  test('the blocked ranges cover every special range ipaddr.js knows but the reserved ones', () => {
    type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];
    const special = (ip: object) =>
      Object.entries((ip as { SpecialRanges: Record<string, Range | Range[]> }).SpecialRanges);
    const first = [...special(ipaddr.IPv4.prototype), ...special(ipaddr.IPv6.prototype)]
      .filter(([name]) => name !== 'reserved' && name !== 'ipv4Mapped')
      .flatMap(([, value]) => (Array.isArray(value[0]) ? (value as Range[]) : [value as Range]))
      .map(([network]) => network.toString());
    expect(first.length).toBeGreaterThan(20);
    for (const address of first) expect(isPublicAddress(address), address).toBe(false);
  });

  test('describes the range in refusals', () => {
    expect(describeAddress('10.0.0.5')).toBe('a private address');
    expect(describeAddress('169.254.169.254')).toBe('a link-local address');
    expect(describeAddress('::ffff:127.0.0.1')).toBe('a loopback address');
  });
});

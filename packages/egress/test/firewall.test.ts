import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { bridgeCommands } from '../src/firewall.js';
import {
  BLOCKED_RANGES,
  closeBridge,
  FIREWALL_TABLE,
  listOpenings,
  removeBridge,
  setOpenings,
  type BridgeClosure,
} from '../src/index.js';

const run = promisify(execFile);
const unique = () => randomBytes(3).toString('hex');

const SETUP: BridgeClosure = {
  bridge: 'tee-unit0',
  outbound: { resolvers: ['10.255.255.53'], allowed: [{ address: '10.0.0.5', port: 3128 }] },
};

describe('the generated ruleset', () => {
  test('blocks every range of the egress policy on a bridge with a route out', () => {
    const text = bridgeCommands(SETUP).join('\n');
    for (const { cidr } of BLOCKED_RANGES) expect(text).toContain(` ${cidr}`);
  });

  test('opens DNS on the given resolvers only, and the proxy on its port only', () => {
    const rules = bridgeCommands(SETUP).filter((command) => command.includes(' accept'));
    expect(rules).toEqual([
      'add rule inet assist_tee outbound-tee-unit0 ip daddr { 10.255.255.53 } meta l4proto { tcp, udp } th dport 53 accept',
      'add rule inet assist_tee outbound-tee-unit0 ip daddr . tcp dport { 10.0.0.5 . 3128 } accept',
    ]);
  });

  test('refuses everything a bridge without a route out sends elsewhere', () => {
    expect(bridgeCommands({ bridge: 'tee-unit1', outbound: 'nowhere' })).toContain(
      'add rule inet assist_tee outbound-tee-unit1 jump refuse',
    );
  });

  test.each([
    [{ ...SETUP, bridge: 'tee unit' }, /^bridge "tee unit": expected an interface name/],
    [{ ...SETUP, bridge: 'a-very-long-bridge' }, /^bridge "a-very-long-bridge"/],
    [
      { ...SETUP, outbound: { resolvers: ['10.0.0.1; flush ruleset'], allowed: [] } },
      /^resolvers\[0\]: "10.0.0.1; flush ruleset" is not an IP address$/,
    ],
    [
      { ...SETUP, outbound: { resolvers: [], allowed: [{ address: '10.0.0.5', port: 0 }] } },
      /^allowed\[0\]\.port: 0 is not a port/,
    ],
  ])('names the bad field of %j', (closure, problem) => {
    expect(() => bridgeCommands(closure)).toThrow(problem);
  });
});

// The real table, shared with any stack running on this host: each test uses its own bridge
// names and owners, and removes them.
describe('the firewall applied', () => {
  const bridges: string[] = [];
  const owners: string[] = [];
  const bridge = () => {
    const name = `tee-t${unique()}`;
    bridges.push(name);
    return name;
  };
  const owner = () => {
    const name = `test-${unique()}`;
    owners.push(name);
    return name;
  };
  const ruleset = async () =>
    (JSON.parse((await run('nft', ['-j', 'list', 'ruleset'])).stdout) as { nftables: object[] })
      .nftables;
  const openingsOf = async (name: string) =>
    (await listOpenings()).filter((opening) => opening.owner === name);

  afterAll(async () => {
    for (const name of owners) await setOpenings(name, []);
    for (const name of bridges) await removeBridge(name);
    const left = JSON.stringify(await ruleset());
    for (const name of [...bridges, ...owners]) expect(left).not.toContain(name);
  });

  test('applying a closure twice leaves one table and one copy of each rule', async () => {
    const closure = { ...SETUP, bridge: bridge() };
    await closeBridge(closure);
    const once = await ruleset();
    await closeBridge(closure);
    const twice = await ruleset();
    const tables = twice.filter(
      (object) => 'table' in object && (object.table as { name: string }).name === FIREWALL_TABLE,
    );
    expect(tables).toHaveLength(1);
    // Other stacks may change their own parts meanwhile: count the shared chains and this one.
    const chains = ['input', 'forward', 'refuse', `outbound-${closure.bridge}`];
    const rules = (objects: object[]) =>
      objects
        .map((object) => (object as { rule?: { table: string; chain: string } }).rule)
        .filter((rule) => rule?.table === FIREWALL_TABLE && chains.includes(rule.chain))
        .map((rule) => rule!.chain);
    expect(rules(twice)).toEqual(rules(once));
    expect(rules(twice).filter((chain) => chain === chains[3])).toHaveLength(4);
  });

  test('a second owner keeps its openings when the first replaces its own', async () => {
    const [first, second, name] = [owner(), owner(), bridge()];
    const at = (port: number) => ({ bridge: name, address: '172.30.0.1', port });
    await setOpenings(first, [at(40001)]);
    await setOpenings(second, [at(40002)]);
    await setOpenings(first, [at(40003)]);
    expect(await openingsOf(first)).toEqual([{ ...at(40003), owner: first }]);
    expect(await openingsOf(second)).toEqual([{ ...at(40002), owner: second }]);
    await setOpenings(first, []);
    expect(await openingsOf(first)).toEqual([]);
    expect(await openingsOf(second)).toHaveLength(1);
  });

  test("a successor removes what a killed owner left, and takes over a dead owner's port", async () => {
    const [dead, other, name] = [owner(), owner(), bridge()];
    const at = (port: number) => ({ bridge: name, address: '172.30.0.1', port });
    // What a killed process leaves: its opening, never closed.
    await run('nft', [
      'add',
      'element',
      'inet',
      FIREWALL_TABLE,
      'openings',
      `{ "${name}" . 172.30.0.1 . 40011 comment "${dead}" }`,
    ]);
    await setOpenings(other, [at(40012)]);
    // The successor of the dead process (same instance) opens another port; then a new instance
    // listens on the port the other one had (it is gone too).
    await setOpenings(dead, [at(40013)]);
    expect(await openingsOf(dead)).toEqual([{ ...at(40013), owner: dead }]);
    const successor = owner();
    await setOpenings(successor, [at(40012)]);
    expect(await openingsOf(other)).toEqual([]);
    expect(await openingsOf(successor)).toEqual([{ ...at(40012), owner: successor }]);
  });

  test('says what is missing when nft is not installed', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const failure = await closeBridge(SETUP).catch((error: unknown) => error as Error);
      expect(failure).toBeInstanceOf(Error);
      expect((failure as Error).message).toMatch(
        /^closing bridge tee-unit0 failed: the services need nft \(the nftables package\)/,
      );
      expect(String((failure as Error).cause)).toMatch(/nft is not installed/);
    } finally {
      process.env.PATH = path;
    }
  });

  test('removes the iptables chains of earlier versions and their jumps', async () => {
    const iptables = (...args: string[]) => run('iptables', ['-w', ...args]);
    // As the previous version left them (iptables-nft writes them to the ip filter table).
    await iptables('-N', 'ASSIST-TEE-INPUT').catch(() => undefined);
    await iptables('-I', 'INPUT', '1', '-j', 'ASSIST-TEE-INPUT');
    await iptables('-A', 'ASSIST-TEE-INPUT', '-i', 'tee-unit0', '-j', 'REJECT');
    await iptables('-N', 'ASSIST-TEE-FORWARD').catch(() => undefined);
    await iptables('-I', 'DOCKER-USER', '1', '-j', 'ASSIST-TEE-FORWARD');
    expect(JSON.stringify(await ruleset())).toContain('ASSIST-TEE-FORWARD');
    await closeBridge({ ...SETUP, bridge: bridge() });
    expect(JSON.stringify(await ruleset())).not.toContain('ASSIST-TEE');
  });
});

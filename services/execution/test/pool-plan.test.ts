import { describe, expect, it } from 'vitest';
import {
  allot,
  type EnvironmentDemand,
  evictionOrder,
  planPool,
  warmTarget,
} from '../src/pool-plan.js';

/** An environment in use, last used `ago` ms before the others' reference time. */
const demand = (
  environmentId: string,
  fields: Partial<EnvironmentDemand> & { ago?: number } = {},
): EnvironmentDemand => ({
  environmentId,
  tenantId: 't1',
  wanted: 1,
  active: true,
  callsPerSecond: 0,
  lastUseAt: 1_000_000 - (fields.ago ?? 0),
  ...fields,
});

const counts = (entries: Record<string, number>) => new Map(Object.entries(entries));

describe('warmTarget', () => {
  it('keeps one sandbox for light use, more as calls during a start become likely', () => {
    expect(warmTarget(0, 600, 4)).toBe(1);
    // One call in the last 10 s: 6 % that the next comes during a 600 ms start.
    expect(warmTarget(0.1, 600, 4)).toBe(1);
    // 0.6 calls/s: 30 % that one comes during the start, 5 % that two do.
    expect(warmTarget(0.6, 600, 4)).toBe(2);
    expect(warmTarget(1, 1000, 4)).toBe(3);
    expect(warmTarget(20, 1000, 4)).toBe(4);
    expect(warmTarget(20, 1000, 1)).toBe(1);
  });
});

describe('allot', () => {
  it("gives each environment its first sandbox before any environment's second", () => {
    const granted = allot(
      [
        demand('a', { wanted: 3 }),
        demand('b', { wanted: 2, ago: 10 }),
        demand('c', { wanted: 1, ago: 20 }),
      ],
      4,
    );
    expect(granted).toEqual(counts({ a: 2, b: 1, c: 1 }));
  });

  it('serves environments in use before idle ones, and the most recently used first', () => {
    const granted = allot(
      [
        demand('idle-recent', { active: false, ago: 20_000 }),
        demand('idle-old', { active: false, ago: 90_000 }),
        demand('busy', { wanted: 2, ago: 5_000 }),
      ],
      3,
    );
    // busy's second sandbox comes before any idle environment's first.
    expect(granted).toEqual(counts({ busy: 2, 'idle-recent': 1 }));
  });

  it('serves the busiest environment in use before a more recently used one', () => {
    const granted = allot(
      [demand('once', { callsPerSecond: 0 }), demand('hot', { callsPerSecond: 0.4, ago: 2_000 })],
      1,
    );
    expect(granted).toEqual(counts({ hot: 1 }));
  });

  it('gives each tenant its fair share before another gets more', () => {
    const big = Array.from({ length: 6 }, (_, i) => demand(`big-${i}`, { tenantId: 'big' }));
    // The small tenant's environments were used longest ago: rank alone would leave them out.
    const small = [
      demand('small-0', { tenantId: 'small', ago: 60_000 }),
      demand('small-1', { tenantId: 'small', ago: 60_000 }),
    ];
    const granted = allot([...big, ...small], 4);
    expect(granted.get('small-0')).toBe(1);
    expect(granted.get('small-1')).toBe(1);
    expect([...granted.keys()].filter((id) => id.startsWith('big'))).toHaveLength(2);
  });

  it('lets a tenant use what the others do not want, and never more than the budget', () => {
    const granted = allot(
      [
        demand('a', { tenantId: 'a', wanted: 4 }),
        demand('b', { tenantId: 'b', wanted: 1, ago: 10 }),
        demand('c', { tenantId: 'c', wanted: 4, ago: 20 }),
      ],
      8,
    );
    expect(granted).toEqual(counts({ a: 4, b: 1, c: 3 }));
    expect(allot([demand('x', { wanted: 4 })], 0)).toEqual(new Map());
  });

  it('gives nothing to an environment that wants nothing', () => {
    expect(allot([demand('expired', { wanted: 0 })], 4)).toEqual(new Map());
  });
});

describe('planPool', () => {
  it('starts what is missing without removing anything while there is room', () => {
    const plan = planPool(
      [demand('new'), demand('idle', { active: false, ago: 60_000 })],
      counts({ idle: 1 }),
      counts({ idle: 1 }),
      3,
    );
    expect(plan).toEqual({ start: ['new'], evict: [] });
  });

  it('evicts the least recently used idle environment to make room for one in use', () => {
    const plan = planPool(
      [
        demand('new'),
        demand('old', { active: false, ago: 120_000 }),
        demand('older', { active: false, ago: 180_000 }),
        demand('recent', { active: false, ago: 30_000 }),
      ],
      counts({ old: 1, older: 1, recent: 1 }),
      counts({ old: 1, older: 1, recent: 1 }),
      3,
    );
    expect(plan).toEqual({ start: ['new'], evict: ['older'] });
  });

  it('waits for evicted sandboxes to be gone before it starts in their room', () => {
    const demands = [demand('new'), demand('kept', { active: false, ago: 60_000 })];
    // The first plan evicted one sandbox; it is still being removed.
    const plan = planPool(demands, counts({ kept: 1 }), counts({ kept: 1 }), 2, 1);
    expect(plan).toEqual({ start: [], evict: [] });
    expect(planPool(demands, counts({ kept: 1 }), counts({ kept: 1 }), 2, 0)).toEqual({
      start: ['new'],
      evict: [],
    });
  });

  it('never evicts a sandbox still starting: it is about to be used', () => {
    const plan = planPool(
      [demand('new'), demand('starting', { active: false, ago: 120_000 })],
      counts({ starting: 1 }),
      counts({}),
      1,
    );
    expect(plan).toEqual({ start: [], evict: [] });
  });

  it('takes surplus sandboxes first, and only as many as the starts need', () => {
    const plan = planPool(
      [
        demand('a'),
        demand('b', { ago: 10 }),
        // Held two while its demand was higher; wants one now.
        demand('was-busy', { ago: 20 }),
        demand('idle', { active: false, ago: 60_000 }),
      ],
      counts({ 'was-busy': 2, idle: 1 }),
      counts({ 'was-busy': 2, idle: 1 }),
      4,
    );
    // a and b need two slots; one is free; the surplus goes before the idle one.
    expect(plan).toEqual({ start: ['a', 'b'], evict: ['was-busy'] });
  });
});

describe('evictionOrder', () => {
  it('gives memory back from surplus, then idle environments, then those in use', () => {
    const demands = [
      demand('busy', { wanted: 1 }),
      demand('idle', { active: false, ago: 60_000 }),
      demand('surplus', { wanted: 1, ago: 10 }),
    ];
    const held = counts({ busy: 1, idle: 1, surplus: 2 });
    expect(evictionOrder(demands, held, held, new Map(), 10)).toEqual([
      'surplus',
      'idle',
      'surplus',
      'busy',
    ]);
    expect(evictionOrder(demands, held, held, new Map(), 1)).toEqual(['surplus']);
  });
});

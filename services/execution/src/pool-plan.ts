/**
 * How the warm pool divides its budget between environments: pure functions of what it knows,
 * so the sizing can be tested on its own.
 */

/** What the pool knows of one environment when it divides its budget. */
export interface EnvironmentDemand {
  environmentId: string;
  tenantId: string;
  /** Warm sandboxes it should have by its own demand (warmTarget); 0 once it has expired. */
  wanted: number;
  /** Executed (or created) within the demand window: in use now, not merely remembered. */
  active: boolean;
  /** Its recent execution rate. */
  callsPerSecond: number;
  /** When it was last executed or created (epoch ms). */
  lastUseAt: number;
}

/** Warm sandboxes per environment (ready and starting together). */
export type SlotCounts = ReadonlyMap<string, number>;

/** A sandbox an environment wants or holds: its k-th (k from 1). */
interface Slot {
  demand: EnvironmentDemand;
  k: number;
}

/**
 * Below this chance that the calls during one start outrun the sandboxes ready, an
 * environment keeps no further sandbox.
 */
const UNCOVERED_CHANCE = 0.1;

/**
 * The warm sandboxes an environment in use should have: one for its next call, and more while
 * the chance that its calls during one start (a Poisson arrival at the recent rate) would find
 * none ready is at least UNCOVERED_CHANCE. Within 1 and `max`.
 */
export function warmTarget(callsPerSecond: number, startMs: number, max: number): number {
  const expected = (callsPerSecond * startMs) / 1000;
  let target = 1;
  // P(N >= k) for N ~ Poisson(expected), starting at k = 1.
  let atMost = Math.exp(-expected);
  let term = atMost;
  for (let k = 1; target < max && 1 - atMost >= UNCOVERED_CHANCE; k++) {
    target += 1;
    term *= expected / k;
    atMost += term;
  }
  return Math.min(target, max);
}

/** 0: an active environment's slot; 1: one remembered but idle; 2: held beyond what it wants. */
const slotClass = ({ demand, k }: Slot): number => (k > demand.wanted ? 2 : demand.active ? 0 : 1);

/**
 * Which slot is kept first: an environment in use before an idle one, each environment's
 * first sandbox before any environment's second, then the busiest, then the most recently used
 * environment.
 */
function compareSlots(a: Slot, b: Slot): number {
  return (
    slotClass(a) - slotClass(b) ||
    a.k - b.k ||
    b.demand.callsPerSecond - a.demand.callsPerSecond ||
    b.demand.lastUseAt - a.demand.lastUseAt ||
    a.demand.environmentId.localeCompare(b.demand.environmentId)
  );
}

function slots(demand: EnvironmentDemand, from: number, to: number): Slot[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => ({ demand, k: from + i }));
}

/**
 * How many warm sandboxes each environment may have within `budget` sandboxes: slots go in
 * compareSlots order, each tenant first up to its fair share (the budget divided by the
 * tenants that want any), then what the others leave, again in that order.
 */
export function allot(demands: readonly EnvironmentDemand[], budget: number): Map<string, number> {
  const wanted = demands.flatMap((demand) => slots(demand, 1, demand.wanted)).sort(compareSlots);
  const tenants = new Set(wanted.map((slot) => slot.demand.tenantId));
  const share = Math.max(1, Math.floor(budget / Math.max(1, tenants.size)));
  const granted = new Map<string, number>();
  const perTenant = new Map<string, number>();
  let total = 0;
  const grant = ({ demand }: Slot) => {
    granted.set(demand.environmentId, (granted.get(demand.environmentId) ?? 0) + 1);
    perTenant.set(demand.tenantId, (perTenant.get(demand.tenantId) ?? 0) + 1);
    total += 1;
  };
  const beyondShare: Slot[] = [];
  for (const slot of wanted) {
    if (total >= budget) break;
    if ((perTenant.get(slot.demand.tenantId) ?? 0) < share) grant(slot);
    else beyondShare.push(slot);
  }
  for (const slot of beyondShare) {
    if (total >= budget) break;
    grant(slot);
  }
  return granted;
}

/**
 * Ready sandboxes to remove, worst slot first (one environment id per sandbox): at most
 * `count`, only from environments holding more than `keep` allows, and never more than an
 * environment has ready (sandboxes still starting are about to be used; they stay).
 */
export function evictionOrder(
  demands: readonly EnvironmentDemand[],
  held: SlotCounts,
  ready: SlotCounts,
  keep: SlotCounts,
  count: number,
): string[] {
  const surplus = demands.flatMap((demand) => {
    const id = demand.environmentId;
    const holds = held.get(id) ?? 0;
    const above = Math.max(keep.get(id) ?? 0, holds - (ready.get(id) ?? 0));
    return slots(demand, above + 1, holds);
  });
  return surplus
    .sort((a, b) => compareSlots(b, a))
    .slice(0, Math.max(0, count))
    .map((slot) => slot.demand.environmentId);
}

/**
 * What the budget asks of the pool now: the sandboxes to start (best slot first, one
 * environment id per sandbox) and the ready ones to remove to make room for them. Nothing is
 * removed while the budget has room for every start, so an idle environment keeps its
 * sandboxes until another environment needs the space. Starts wait for the room of evicted
 * sandboxes until they are gone, so the pool's sandboxes never exceed the budget.
 */
export function planPool(
  demands: readonly EnvironmentDemand[],
  held: SlotCounts,
  ready: SlotCounts,
  budget: number,
  /** Sandboxes evicted but not yet gone: their room is not free yet. */
  leaving = 0,
): { start: string[]; evict: string[] } {
  const granted = allot(demands, budget);
  const start = demands
    .flatMap((demand) => {
      const id = demand.environmentId;
      return slots(demand, (held.get(id) ?? 0) + 1, granted.get(id) ?? 0);
    })
    .sort(compareSlots)
    .map((slot) => slot.demand.environmentId);
  let holding = 0;
  for (const count of held.values()) holding += count;
  const free = Math.max(0, budget - holding - leaving);
  const evict = evictionOrder(demands, held, ready, granted, start.length - free);
  // A start that finds no room yet (sandboxes still starting, or evicted ones still being
  // removed) waits for a later plan.
  return { start: start.slice(0, free + evict.length), evict };
}

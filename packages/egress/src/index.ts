export {
  BLOCKED_RANGES,
  decideTarget,
  describeAddress,
  formatTarget,
  isPublicAddress,
  parseAllowNet,
  parseAllowNetEntry,
  type AllowNetEntry,
  type BlockedRange,
  type TargetDecision,
} from './policy.js';
export {
  startEgressProxy,
  type EgressGrant,
  type EgressLookup,
  type EgressProxy,
  type EgressProxyOptions,
} from './proxy.js';
export {
  closeBridge,
  FIREWALL_TABLE,
  listOpenings,
  removeBridge,
  setOpenings,
  type BridgeClosure,
  type Endpoint,
  type HostOpening,
  type OwnedOpening,
} from './firewall.js';

export {
  decideTarget,
  describeAddress,
  formatTarget,
  isPublicAddress,
  parseAllowNet,
  parseAllowNetEntry,
  type AllowNetEntry,
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
  closeBridgeToHost,
  closeBridgeToPrivateNetworks,
  closeHostPort,
  closeHostPortsOf,
  FIREWALL_CHAIN,
  FORWARD_CHAIN,
  openHostPort,
  type OpenPort,
} from './firewall.js';

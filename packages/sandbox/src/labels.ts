export const LABEL_PREFIX = 'dev.assist-tee';

/** Labels every container and volume carries, so the reaper can find leftovers. */
export interface SandboxLabels {
  /** The service that created it: 'environments' | 'execution' | ... */
  owner: string;
  /** The process instance that created it. */
  instanceId: string;
  environmentId?: string;
  executionId?: string;
  /** The session whose sandbox it is (started for it; a session may also take a warm one). */
  sessionId?: string;
  /** 'warm' on a sandbox started ahead of demand: no execution is its own until one takes it. */
  pool?: string;
  /** The system it belongs to (its event namespace): a reaper sweeps only its own. */
  deployment?: string;
}

const KEYS: Record<keyof SandboxLabels, string> = {
  owner: `${LABEL_PREFIX}.owner`,
  instanceId: `${LABEL_PREFIX}.instance-id`,
  environmentId: `${LABEL_PREFIX}.environment-id`,
  executionId: `${LABEL_PREFIX}.execution-id`,
  sessionId: `${LABEL_PREFIX}.session-id`,
  pool: `${LABEL_PREFIX}.pool`,
  deployment: `${LABEL_PREFIX}.deployment`,
};

export const MANAGED_LABEL = `${LABEL_PREFIX}.managed`;

/** The Docker labels for these sandbox labels; absent ids are left out, not set empty. */
export function toDockerLabels(labels: SandboxLabels): Record<string, string> {
  const result: Record<string, string> = { [MANAGED_LABEL]: 'true' };
  for (const [key, label] of Object.entries(KEYS) as [keyof SandboxLabels, string][]) {
    const value = labels[key];
    if (value !== undefined) result[label] = value;
  }
  return result;
}

/** Label filters for Docker list calls: everything we manage, narrowed by the given labels. */
export function labelFilter(labels: Partial<SandboxLabels>): string[] {
  const filters = [`${MANAGED_LABEL}=true`];
  for (const [key, label] of Object.entries(KEYS) as [keyof SandboxLabels, string][]) {
    const value = labels[key];
    if (value !== undefined) filters.push(`${label}=${value}`);
  }
  return filters;
}

/** The sandbox labels read back from a container's or volume's Docker labels. */
export function fromDockerLabels(labels: Record<string, string>): Partial<SandboxLabels> {
  const result: Partial<SandboxLabels> = {};
  for (const [key, label] of Object.entries(KEYS) as [keyof SandboxLabels, string][]) {
    const value = labels[label];
    if (value !== undefined) result[key] = value;
  }
  return result;
}

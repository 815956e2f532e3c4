import type Docker from 'dockerode';
import { labelFilter, type SandboxLabels } from './labels.js';
import type { DriverContext } from './context.js';

export interface ListedContainer {
  id: string;
  labels: Record<string, string>;
  state: string;
  createdAt: Date;
}

export interface ListedVolume {
  name: string;
  labels: Record<string, string>;
  createdAt: Date;
}

/** Containers (running or not) carrying these labels. */
export async function listContainers(
  { docker, labelled }: DriverContext,
  labels: Partial<SandboxLabels>,
): Promise<ListedContainer[]> {
  const containers = await docker.listContainers({
    all: true,
    filters: { label: labelFilter(labelled(labels)) },
  });
  return containers.map((container) => ({
    id: container.Id,
    labels: container.Labels ?? {},
    state: container.State,
    createdAt: new Date(container.Created * 1000),
  }));
}

/** The ids of every container the engine lists, whoever made it. */
export async function engineContainerIds(docker: Docker): Promise<Set<string>> {
  const containers = await docker.listContainers({ all: true });
  return new Set(containers.map((container) => container.Id));
}

export async function listVolumes(
  { docker, labelled }: DriverContext,
  labels: Partial<SandboxLabels>,
): Promise<ListedVolume[]> {
  const { Volumes } = await docker.listVolumes({
    filters: { label: labelFilter(labelled(labels)) },
  });
  return (Volumes ?? []).map((volume) => ({
    name: volume.Name,
    labels: volume.Labels ?? {},
    createdAt: new Date((volume as { CreatedAt?: string }).CreatedAt ?? 0),
  }));
}

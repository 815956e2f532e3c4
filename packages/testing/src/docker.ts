import type {
  ListedContainer,
  ListedVolume,
  SandboxDriver,
  SandboxLabels,
} from '@assist-tee/sandbox';

export interface LabelledResources {
  containers: ListedContainer[];
  volumes: ListedVolume[];
}

/** Force-removes every container, then every volume, carrying these labels. */
export async function removeLabelled(
  driver: SandboxDriver,
  labels: Partial<SandboxLabels>,
): Promise<void> {
  // Containers first: a volume in use by a container cannot be removed.
  const containers = await driver.listContainers(labels);
  await Promise.all(containers.map((container) => driver.removeContainer(container.id)));
  const volumes = await driver.listVolumes(labels);
  await Promise.all(volumes.map((volume) => driver.removeVolume(volume.name)));
}

/** The containers and volumes carrying these labels, for a test to assert they are gone. */
export async function listLabelled(
  driver: SandboxDriver,
  labels: Partial<SandboxLabels>,
): Promise<LabelledResources> {
  const [containers, volumes] = await Promise.all([
    driver.listContainers(labels),
    driver.listVolumes(labels),
  ]);
  return { containers, volumes };
}

/**
 * Throws, naming what is left, if any container or volume carries these labels after
 * `withinMs`: a used sandbox is removed in the background, just after its execution answers.
 */
export async function expectNothingLabelled(
  driver: SandboxDriver,
  labels: Partial<SandboxLabels>,
  withinMs = 10_000,
): Promise<LabelledResources> {
  const deadline = Date.now() + withinMs;
  let left = await listLabelled(driver, labels);
  while ((left.containers.length > 0 || left.volumes.length > 0) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = await listLabelled(driver, labels);
  }
  if (left.containers.length > 0 || left.volumes.length > 0) {
    const names = [
      ...left.containers.map(
        (container) => `container ${container.id.slice(0, 12)} (${container.state})`,
      ),
      ...left.volumes.map((volume) => `volume ${volume.name}`),
    ];
    throw new Error(`left behind with labels ${JSON.stringify(labels)}: ${names.join(', ')}`);
  }
  return left;
}

/** Waits until `count` containers carrying these labels are running; fails after `timeoutMs`. */
export async function waitForRunning(
  driver: SandboxDriver,
  labels: Partial<SandboxLabels>,
  count = 1,
  timeoutMs = 30_000,
): Promise<ListedContainer[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running = (await driver.listContainers(labels)).filter(
      (container) => container.state === 'running',
    );
    if (running.length >= count) return running;
    if (Date.now() > deadline) {
      throw new Error(`${count} running containers ${JSON.stringify(labels)} did not appear`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

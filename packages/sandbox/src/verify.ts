import { basename } from 'node:path';

/** A runtime as `docker info` lists it. */
export interface EngineRuntime {
  path?: string;
  runtimeArgs?: string[];
}

/**
 * What makes an engine runtime the gVisor sandbox we intend: the runsc binary, with the network
 * mode given explicitly (runsc needs one on these hosts: docs/host-facts.md). Returns the
 * problems; none means it is.
 */
export function runtimeProblems(
  name: string,
  runtime: EngineRuntime | undefined,
  networkArg: '--network=none' | '--network=host',
): string[] {
  if (runtime === undefined) return [`the Docker engine has no "${name}" runtime`];
  const problems: string[] = [];
  if (basename(runtime.path ?? '') !== 'runsc') {
    problems.push(
      `runtime "${name}" runs ${JSON.stringify(runtime.path ?? '')}, not gVisor's runsc`,
    );
  }
  if (!(runtime.runtimeArgs ?? []).includes(networkArg)) {
    problems.push(`runtime "${name}" is not configured with ${networkArg}`);
  }
  return problems;
}

/** The parts of `docker inspect` that the sandbox rules are checked on. */
export interface InspectedSandbox {
  Config: { Env?: string[] | null; User?: string };
  HostConfig: {
    Runtime?: string;
    Privileged?: boolean;
    ReadonlyRootfs?: boolean;
    CapDrop?: string[] | null;
    CapAdd?: string[] | null;
    SecurityOpt?: string[] | null;
    NetworkMode?: string;
    PidsLimit?: number | null;
    Memory?: number;
    LogConfig?: { Type?: string };
    Tmpfs?: Record<string, string> | null;
  };
  Mounts?: { Source?: string; Destination?: string }[];
}

export interface IntendedSandbox {
  runtime: string;
  networkMode: string;
  user: string;
  /** The environment variables the sandbox was given; the image may add only PATH. */
  env: readonly string[];
}

const DOCKER_SOCKET = /docker\.sock$/;

/**
 * Checks a created sandbox container against the rules it was created with, as the engine
 * reports it, before any user code runs in it. Returns the problems; none means it is as
 * intended.
 */
export function sandboxProblems(actual: InspectedSandbox, intended: IntendedSandbox): string[] {
  const host = actual.HostConfig;
  const problems: string[] = [];
  const expect = (ok: boolean, problem: string) => ok || problems.push(problem);
  expect(
    host.Runtime === intended.runtime,
    `runs under "${host.Runtime}", not "${intended.runtime}"`,
  );
  expect(host.Privileged !== true, 'is privileged');
  expect(host.ReadonlyRootfs === true, 'has a writable root filesystem');
  expect((host.CapDrop ?? []).includes('ALL'), 'keeps capabilities');
  expect((host.CapAdd ?? []).length === 0, 'adds capabilities');
  expect((host.SecurityOpt ?? []).includes('no-new-privileges'), 'allows new privileges');
  expect(
    host.NetworkMode === intended.networkMode,
    `is on network "${host.NetworkMode}", not "${intended.networkMode}"`,
  );
  expect((host.PidsLimit ?? 0) > 0, 'has no PID limit');
  expect((host.Memory ?? 0) > 0, 'has no memory limit');
  expect(host.LogConfig?.Type === 'none', `logs through "${host.LogConfig?.Type}"`);
  // A tmpfs is memory; an uncapped one only stops at the memory limit.
  for (const [target, options] of Object.entries(host.Tmpfs ?? {})) {
    expect(/(^|,)size=[1-9]/.test(options), `has a tmpfs at ${target} without a size cap`);
  }
  expect(actual.Config.User === intended.user, `runs as "${actual.Config.User}"`);
  for (const mount of actual.Mounts ?? []) {
    expect(
      !DOCKER_SOCKET.test(mount.Source ?? '') && !DOCKER_SOCKET.test(mount.Destination ?? ''),
      `mounts the Docker socket (${mount.Source})`,
    );
  }
  const given = new Set(intended.env);
  for (const entry of actual.Config.Env ?? []) {
    const name = entry.slice(0, entry.indexOf('='));
    expect(given.has(entry) || name === 'PATH', `has the environment variable ${name}`);
  }
  return problems;
}

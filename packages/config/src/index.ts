import { randomBytes, randomUUID } from 'node:crypto';

/** Limits of one execution; `timeoutMs` etc. as in the proto's Limits message. */
export interface ExecutionLimits {
  timeoutMs: number;
  memoryMb: number;
  maxOutputBytes: number;
  cpuMillicores: number;
}

export interface Config {
  /** Distinguishes this process's containers and consumers from another's. */
  instanceId: string;
  /** This system, on a Docker engine others may share: its containers and volumes carry it. */
  deployment: string;
  logLevel: string;
  http: {
    host: string;
    port: number;
    /**
     * Largest request message a call may send (each message of a stream), after decompression.
     * Derived from the module and event caps unless TEE_MAX_REQUEST_BYTES is set.
     */
    maxRequestBytes: number;
    /** Largest deadline a client may ask for; the longest call (an execution, a setup) fits. */
    maxCallTimeoutMs: number;
    /** A new connection must send its first request's headers within this. */
    headersTimeoutMs: number;
    /** A request must arrive whole within this; its response (a stream) may take longer. */
    requestTimeoutMs: number;
    /** A connection with no request in progress is closed after this. */
    idleTimeoutMs: number;
    /** Browser origins (scheme://host[:port]) allowed to call cross-origin; empty: CORS off. */
    corsOrigins: string[];
  };
  /** On SIGTERM: time in-flight executions and setups get to finish before they are cut short. */
  shutdownGraceMs: number;
  databaseUrl: string;
  nats: { servers: string; subjectPrefix: string };
  docker: {
    socketPath: string;
    /** The engine runtime of sandboxes without network ("runsc" with --network=none). */
    sandboxRuntime: string;
    /** The engine runtime of sandboxes with network ("runsc" with --network=host). */
    sandboxNetworkRuntime: string;
    /** The runsc binary the reaper cleans stray sandboxes with; empty turns that off. */
    runscPath: string;
    /** runsc's state root for the engine's sandboxes (`runsc --root <it> list` shows them). */
    runscRoot: string;
    /**
     * Development only: run user code even when the sandbox runtimes are not gVisor (runsc).
     * Every start, setup and execution then logs a warning, and /healthz shows it.
     */
    allowInsecureRuntime: boolean;
  };
  /** Where the other services reach the EnvironmentService when they run apart. */
  environmentsUrl: string;
  /** Where the reaper reaches the ExecutionService when they run apart. */
  executionUrl: string;
  execution: {
    defaults: ExecutionLimits;
    maxima: ExecutionLimits;
    /** Host tasks the sandbox may use; runsc's ptrace platform counts ~44 idle + ~7.5 a process. */
    pidsLimit: number;
    tmpfsMb: number;
    /** Time a sandbox may take to start and import the main module. */
    startupTimeoutMs: number;
    /** Largest event (data + env) an execute request may carry. */
    maxEventBytes: number;
    /** How often RUNNING executions past their deadline (their service was lost) are finished. */
    stuckSweepMs: number;
  };
  modules: { maxCount: number; maxFileBytes: number; maxTotalBytes: number; maxPathLength: number };
  setup: {
    maxDependencies: number;
    /** Wall time of one dependency install. */
    timeoutMs: number;
    memoryMb: number;
    /** The install's /tmp (package manager caches); counts against memoryMb. */
    tmpfsMb: number;
    /**
     * Caps on the environment volume, modules and installed dependencies together. An install
     * stops at them while it writes: it runs in a tmpfs of what is left of maxVolumeBytes (memory
     * on top of memoryMb) and reaches the volume as one tar stream, counted again.
     */
    maxVolumeBytes: number;
    maxVolumeFiles: number;
    npmRegistry: string;
    /** A CA bundle file the install trusts (a TLS-intercepting proxy's CA); empty for none. */
    caBundle: string;
    httpProxy: string;
    httpsProxy: string;
    noProxy: string;
  };
  environments: {
    defaultTtlSeconds: number;
    maxTtlSeconds: number;
  };
  /** The execution service's warm sandboxes (services/execution/src/warm-pool.ts). */
  auth: {
    /**
     * The key the services call each other with; it sees every tenant, and operators use it for
     * the operator calls (pool status, sweeps). Random per process unless TEE_SERVICE_KEY is set,
     * which services running apart must share.
     */
    serviceKey: string;
    serviceKeySet: boolean;
    /** Development only: a call without a key acts as the tenant "dev". */
    allowAnonymous: boolean;
  };
  quotas: {
    /** Environments of one tenant that are not deleted. */
    environments: number;
    /** Executions of one tenant running at once, per execution service instance. */
    concurrentExecutions: number;
    /** Setups (CreateEnvironment) of one tenant running at once, per environments instance. */
    concurrentSetups: number;
    /** ACTIVE sessions of one tenant. */
    openSessions: number;
  };
  /** What one instance (process) runs at once, over all tenants and the services' key. */
  capacity: {
    /** Executions running at once in this execution service. */
    maxRunningExecutions: number;
    /** Setups (CreateEnvironment) running at once in this environments service. */
    maxRunningSetups: number;
    /**
     * The memory limits of all this process's sandboxes together: running executions, setups
     * and warm sandboxes (whose budget, pool.memoryBudgetMb, is part of it).
     */
    sandboxMemoryMb: number;
  };
  pool: {
    /** Most warm sandboxes per environment; 0 turns the pool off (every execution is cold). */
    maxPerEnvironment: number;
    /** The memory limits of all warm sandboxes together stay within this. */
    memoryBudgetMb: number;
    /** An environment not executed for this long keeps no warm sandbox. */
    idleMs: number;
    /** Warm sandboxes started at once, over all environments. */
    maxStarts: number;
  };
  /** Sessions: one sandbox kept for a conversation (SessionService). */
  sessions: {
    /** What CreateSession gets for a zero idle_timeout_ms / max_lifetime_ms. */
    defaults: SessionTimeouts;
    /** The most CreateSession may ask for. */
    maxima: SessionTimeouts;
    /** Calls waiting for a session's sandbox behind the running one; more are refused. */
    maxQueuedCalls: number;
  };
  /** request_id keys (CreateEnvironment, DeleteEnvironment, Execute, ExecuteStream). */
  idempotency: {
    /** How long a request_id is remembered: a retry within it gets the first call's answer. */
    retentionMs: number;
  };
  reaper: {
    sweepIntervalMs: number;
    /** Containers and volumes younger than this are never orphans (their owner may be mid-write). */
    orphanGraceMs: number;
  };
  egress: {
    /** Port of the egress proxy on the egress network's gateway; 0 picks a free one. */
    proxyPort: number;
  };
}

export interface SessionTimeouts {
  /** A session ends after this long without a call. */
  idleTimeoutMs: number;
  /** A session ends this long after it was created. */
  maxLifetimeMs: number;
}

// Sessions store these in int columns and send them as uint32: the smaller of the two bounds.
const MAX_SESSION_MS = 2 ** 31 - 1;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/**
 * Reads the configuration from environment variables once, applies defaults and fails fast
 * with every problem at once, each naming its variable.
 */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const str = (name: string, fallback: string): string => {
    const value = env[name];
    return value === undefined || value === '' ? fallback : value;
  };
  const int = (name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${name}: expected a whole number from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  };
  /** Off unless set to "1" or "true". */
  const bool = (name: string): boolean => {
    const raw = env[name];
    if (raw === undefined || raw === '' || raw === '0' || raw === 'false') return false;
    if (raw === '1' || raw === 'true') return true;
    problems.push(`${name}: expected 1, true, 0 or false, got "${raw}"`);
    return false;
  };
  /** Comma-separated exact origins, each as a browser sends it in the Origin header. */
  const origins = (name: string): string[] => {
    const listed = str(name, '')
      .split(',')
      .map((origin) => origin.trim())
      .filter((origin) => origin !== '');
    for (const origin of listed) {
      if (URL.parse(origin)?.origin !== origin) {
        problems.push(`${name}: expected origins such as https://app.example.com, got "${origin}"`);
      }
    }
    return listed;
  };
  const limits = (kind: 'DEFAULT' | 'MAX', fallback: ExecutionLimits): ExecutionLimits => ({
    timeoutMs: int(`TEE_${kind}_TIMEOUT_MS`, fallback.timeoutMs, 1),
    memoryMb: int(`TEE_${kind}_MEMORY_MB`, fallback.memoryMb, 64),
    maxOutputBytes: int(`TEE_${kind}_MAX_OUTPUT_BYTES`, fallback.maxOutputBytes, 1024),
    cpuMillicores: int(`TEE_${kind}_CPU_MILLICORES`, fallback.cpuMillicores, 10),
  });

  const config: Config = {
    instanceId: str('TEE_INSTANCE_ID', randomUUID()),
    // Set below: the subject prefix unless TEE_DEPLOYMENT says otherwise.
    deployment: '',
    logLevel: str('TEE_LOG_LEVEL', 'info'),
    http: {
      host: str('TEE_HOST', '127.0.0.1'),
      port: int('TEE_PORT', 8080, 0, 65535),
      // Set below, from the caps they derive from.
      maxRequestBytes: 0,
      maxCallTimeoutMs: 0,
      headersTimeoutMs: int('TEE_HTTP_HEADERS_TIMEOUT_MS', 10_000, 100),
      requestTimeoutMs: int('TEE_HTTP_REQUEST_TIMEOUT_MS', 60_000, 100),
      // Above the 60 s idle timeout of common load balancers, so that they close first.
      idleTimeoutMs: int('TEE_HTTP_IDLE_TIMEOUT_MS', 65_000, 100),
      corsOrigins: origins('TEE_CORS_ORIGINS'),
    },
    // Inside the 30 s that Kubernetes (and our compose file) waits before a SIGKILL.
    shutdownGraceMs: int('TEE_SHUTDOWN_GRACE_MS', 20_000, 0),
    databaseUrl: str(
      'TEE_DATABASE_URL',
      'postgres://assist_tee:assist_tee@127.0.0.1:5432/assist_tee',
    ),
    nats: {
      servers: str('TEE_NATS_URL', 'nats://127.0.0.1:4222'),
      subjectPrefix: str('TEE_SUBJECT_PREFIX', 'tee'),
    },
    docker: {
      socketPath: str('TEE_DOCKER_SOCKET', '/var/run/docker.sock'),
      sandboxRuntime: str('TEE_SANDBOX_RUNTIME', 'runsc'),
      sandboxNetworkRuntime: str('TEE_SANDBOX_NETWORK_RUNTIME', 'runsc-net'),
      runscPath: str('TEE_RUNSC_PATH', 'runsc'),
      runscRoot: str('TEE_RUNSC_ROOT', '/var/run/docker/runtime-runc/moby'),
      allowInsecureRuntime: bool('TEE_ALLOW_INSECURE_RUNTIME'),
    },
    environmentsUrl: str('TEE_ENVIRONMENTS_URL', 'http://127.0.0.1:8080'),
    executionUrl: str('TEE_EXECUTION_URL', 'http://127.0.0.1:8080'),
    execution: {
      defaults: limits('DEFAULT', {
        timeoutMs: 10_000,
        memoryMb: 256,
        maxOutputBytes: 1024 * 1024,
        cpuMillicores: 1000,
      }),
      maxima: limits('MAX', {
        timeoutMs: 300_000,
        memoryMb: 2048,
        maxOutputBytes: 16 * 1024 * 1024,
        cpuMillicores: 2000,
      }),
      pidsLimit: int('TEE_PIDS_LIMIT', 256, 64),
      tmpfsMb: int('TEE_TMPFS_MB', 64, 1),
      startupTimeoutMs: int('TEE_STARTUP_TIMEOUT_MS', 15_000, 100),
      maxEventBytes: int('TEE_MAX_EVENT_BYTES', 1024 * 1024, 1024),
      stuckSweepMs: int('TEE_STUCK_SWEEP_MS', 30_000, 100),
    },
    modules: {
      maxCount: int('TEE_MAX_MODULES', 200, 1),
      maxFileBytes: int('TEE_MAX_MODULE_BYTES', 1024 * 1024, 1),
      maxTotalBytes: int('TEE_MAX_MODULES_TOTAL_BYTES', 8 * 1024 * 1024, 1),
      maxPathLength: int('TEE_MAX_MODULE_PATH_LENGTH', 255, 1),
    },
    setup: {
      maxDependencies: int('TEE_MAX_DEPENDENCIES', 32, 0),
      timeoutMs: int('TEE_SETUP_TIMEOUT_MS', 180_000, 1000),
      memoryMb: int('TEE_SETUP_MEMORY_MB', 1024, 128),
      tmpfsMb: int('TEE_SETUP_TMPFS_MB', 512, 16),
      maxVolumeBytes: int('TEE_MAX_ENVIRONMENT_BYTES', 512 * 1024 * 1024, 1024),
      maxVolumeFiles: int('TEE_MAX_ENVIRONMENT_FILES', 50_000, 1),
      // The host's own settings are the defaults: what works for npm here works in the sandbox.
      npmRegistry: str(
        'TEE_NPM_REGISTRY',
        str('npm_config_registry', 'https://registry.npmjs.org/'),
      ),
      caBundle: str('TEE_CA_BUNDLE', str('SSL_CERT_FILE', '')),
      httpProxy: str('TEE_SETUP_HTTP_PROXY', str('HTTP_PROXY', str('http_proxy', ''))),
      httpsProxy: str('TEE_SETUP_HTTPS_PROXY', str('HTTPS_PROXY', str('https_proxy', ''))),
      noProxy: str('TEE_SETUP_NO_PROXY', str('NO_PROXY', str('no_proxy', ''))),
    },
    egress: { proxyPort: int('TEE_EGRESS_PROXY_PORT', 3128, 0, 65535) },
    environments: {
      defaultTtlSeconds: int('TEE_DEFAULT_TTL_SECONDS', 24 * 60 * 60, 1),
      maxTtlSeconds: int('TEE_MAX_TTL_SECONDS', 7 * 24 * 60 * 60, 1),
    },
    auth: {
      serviceKey: str('TEE_SERVICE_KEY', `tee_service_${randomBytes(24).toString('base64url')}`),
      serviceKeySet: (env.TEE_SERVICE_KEY ?? '') !== '',
      allowAnonymous: bool('TEE_ALLOW_NO_AUTH'),
    },
    quotas: {
      environments: int('TEE_QUOTA_ENVIRONMENTS', 100, 1),
      concurrentExecutions: int('TEE_QUOTA_CONCURRENT_EXECUTIONS', 50, 1),
      concurrentSetups: int('TEE_QUOTA_CONCURRENT_SETUPS', 10, 1),
      openSessions: int('TEE_QUOTA_OPEN_SESSIONS', 10, 1),
    },
    // Sized for 2 cores and 24 GiB: more cold starts at once than this only queue for the CPU,
    // and the rest of the memory is the host's (runsc's own, Docker, Postgres, NATS).
    capacity: {
      maxRunningExecutions: int('TEE_MAX_RUNNING_EXECUTIONS', 24, 1),
      maxRunningSetups: int('TEE_MAX_RUNNING_SETUPS', 8, 1),
      sandboxMemoryMb: int('TEE_SANDBOX_MEMORY_MB', 16_384, 64),
    },
    pool: {
      maxPerEnvironment: int('TEE_POOL_MAX_PER_ENVIRONMENT', 4, 0),
      memoryBudgetMb: int('TEE_POOL_MEMORY_MB', 4096, 0),
      idleMs: int('TEE_POOL_IDLE_MS', 5 * 60_000, 1000),
      maxStarts: int('TEE_POOL_MAX_STARTS', 2, 1),
    },
    sessions: {
      defaults: {
        idleTimeoutMs: int('TEE_SESSION_IDLE_TIMEOUT_MS', 5 * 60_000, 1000, MAX_SESSION_MS),
        maxLifetimeMs: int('TEE_SESSION_MAX_LIFETIME_MS', 60 * 60_000, 1000, MAX_SESSION_MS),
      },
      maxima: {
        idleTimeoutMs: int('TEE_SESSION_MAX_IDLE_TIMEOUT_MS', 60 * 60_000, 1000, MAX_SESSION_MS),
        maxLifetimeMs: int(
          'TEE_SESSION_MAX_MAX_LIFETIME_MS',
          24 * 60 * 60_000,
          1000,
          MAX_SESSION_MS,
        ),
      },
      maxQueuedCalls: int('TEE_SESSION_MAX_QUEUED_CALLS', 16, 0),
    },
    idempotency: {
      retentionMs: int('TEE_IDEMPOTENCY_RETENTION_MS', 24 * 60 * 60_000, 1000),
    },
    reaper: {
      sweepIntervalMs: int('TEE_SWEEP_INTERVAL_MS', 60_000, 100),
      orphanGraceMs: int('TEE_ORPHAN_GRACE_MS', 5 * 60_000, 0),
    },
  };
  config.deployment = str('TEE_DEPLOYMENT', config.nats.subjectPrefix);
  config.http.maxRequestBytes = int('TEE_MAX_REQUEST_BYTES', defaultMaxRequestBytes(config), 1024);
  config.http.maxCallTimeoutMs = int('TEE_MAX_CALL_TIMEOUT_MS', defaultMaxCallTimeoutMs(config), 1);
  if (config.http.headersTimeoutMs > config.http.requestTimeoutMs) {
    problems.push('TEE_HTTP_HEADERS_TIMEOUT_MS is above TEE_HTTP_REQUEST_TIMEOUT_MS');
  }
  if (config.environments.defaultTtlSeconds > config.environments.maxTtlSeconds) {
    problems.push('TEE_DEFAULT_TTL_SECONDS is above TEE_MAX_TTL_SECONDS');
  }
  if (!/^https?:\/\/[^\s]+$/.test(config.setup.npmRegistry)) {
    problems.push(`TEE_NPM_REGISTRY: expected an http(s) URL, got "${config.setup.npmRegistry}"`);
  }
  if (!/^[a-z][a-z0-9_-]*$/.test(config.nats.subjectPrefix)) {
    problems.push(
      `TEE_SUBJECT_PREFIX: expected lowercase letters, digits, "-" or "_", got "${config.nats.subjectPrefix}"`,
    );
  }
  for (const key of Object.keys(config.execution.defaults) as (keyof ExecutionLimits)[]) {
    if (config.execution.defaults[key] > config.execution.maxima[key]) {
      problems.push(`TEE_DEFAULT_${envName(key)} is above TEE_MAX_${envName(key)}`);
    }
  }
  const sessionLimits: [keyof SessionTimeouts, string, string][] = [
    ['idleTimeoutMs', 'TEE_SESSION_IDLE_TIMEOUT_MS', 'TEE_SESSION_MAX_IDLE_TIMEOUT_MS'],
    ['maxLifetimeMs', 'TEE_SESSION_MAX_LIFETIME_MS', 'TEE_SESSION_MAX_MAX_LIFETIME_MS'],
  ];
  for (const [key, defaultName, maxName] of sessionLimits) {
    if (config.sessions.defaults[key] > config.sessions.maxima[key]) {
      problems.push(`${defaultName} is above ${maxName}`);
    }
  }
  // Each of these could never be admitted, or the warm pool could starve running work.
  const { sandboxMemoryMb } = config.capacity;
  const fits: [string, number][] = [
    ['TEE_POOL_MEMORY_MB', config.pool.memoryBudgetMb],
    ['TEE_MAX_MEMORY_MB', config.execution.maxima.memoryMb],
    ['TEE_SETUP_MEMORY_MB + TEE_MAX_ENVIRONMENT_BYTES', setupMemoryMb(config)],
  ];
  for (const [name, mb] of fits) {
    if (mb > sandboxMemoryMb) {
      problems.push(`${name} (${mb}) is above TEE_SANDBOX_MEMORY_MB (${sandboxMemoryMb})`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * The most memory one setup's install sandbox may use: its own limit (which holds its /tmp) plus
 * the tmpfs it installs into, at most the volume cap.
 */
export function setupMemoryMb(config: Pick<Config, 'setup'>): number {
  return config.setup.memoryMb + Math.ceil(config.setup.maxVolumeBytes / (1024 * 1024));
}

/**
 * Room for the largest CreateEnvironment (the modules, twice over for JSON's escapes) or Execute
 * (the event, eight times over: protobuf's binary form of a JSON value is that much larger for
 * an array of numbers), plus 1 MiB for the other fields.
 */
function defaultMaxRequestBytes(config: Pick<Config, 'modules' | 'execution'>): number {
  return (
    Math.max(2 * config.modules.maxTotalBytes, 8 * config.execution.maxEventBytes) + 1024 * 1024
  );
}

/** Twice the longest call: an execution with its sandbox's start, or a setup. */
function defaultMaxCallTimeoutMs(config: Pick<Config, 'execution' | 'setup'>): number {
  const { maxima, startupTimeoutMs } = config.execution;
  return 2 * Math.max(maxima.timeoutMs + startupTimeoutMs, config.setup.timeoutMs);
}

function envName(key: keyof ExecutionLimits): string {
  return key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

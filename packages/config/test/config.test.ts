import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/index.js';

describe('loadConfig', () => {
  it('applies defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config.http.port).toBe(8080);
    expect(config.nats.subjectPrefix).toBe('tee');
    expect(config.docker.sandboxRuntime).toBe('runsc');
    expect(config.execution.defaults.timeoutMs).toBeLessThanOrEqual(
      config.execution.maxima.timeoutMs,
    );
  });

  it('reads overrides', () => {
    const config = loadConfig({ TEE_PORT: '9090', TEE_DEFAULT_MEMORY_MB: '128' });
    expect(config.http.port).toBe(9090);
    expect(config.execution.defaults.memoryMb).toBe(128);
  });

  it('names every bad variable at once', () => {
    let error: unknown;
    try {
      loadConfig({
        TEE_PORT: 'eighty',
        TEE_DEFAULT_TIMEOUT_MS: '-1',
        TEE_SUBJECT_PREFIX: 'Bad.Prefix',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toContain('TEE_PORT');
    expect(problems).toContain('TEE_DEFAULT_TIMEOUT_MS');
    expect(problems).toContain('TEE_SUBJECT_PREFIX');
  });

  it('reads the CORS origins: none by default, exact origins only', () => {
    expect(loadConfig({}).http.corsOrigins).toEqual([]);
    expect(
      loadConfig({ TEE_CORS_ORIGINS: 'https://app.example.com, http://localhost:5173' }).http
        .corsOrigins,
    ).toEqual(['https://app.example.com', 'http://localhost:5173']);
    for (const origin of ['app.example.com', 'https://app.example.com/', '*']) {
      expect(() => loadConfig({ TEE_CORS_ORIGINS: origin })).toThrow(
        `TEE_CORS_ORIGINS: expected origins such as https://app.example.com, got "${origin}"`,
      );
    }
  });

  it('keeps the warm pool, the largest execution and a setup within the sandbox memory', () => {
    expect(loadConfig({}).capacity.sandboxMemoryMb).toBeGreaterThanOrEqual(
      loadConfig({}).pool.memoryBudgetMb,
    );
    let error: unknown;
    try {
      loadConfig({ TEE_SANDBOX_MEMORY_MB: '1024' });
    } catch (e) {
      error = e;
    }
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toContain('TEE_POOL_MEMORY_MB (4096) is above TEE_SANDBOX_MEMORY_MB (1024)');
    expect(problems).toContain('TEE_MAX_MEMORY_MB (2048)');
    expect(problems).toContain('TEE_SETUP_MEMORY_MB + TEE_MAX_ENVIRONMENT_BYTES (1536)');
  });

  it("takes the install's registry, CA bundle and proxies from the host's own settings", () => {
    const config = loadConfig({
      SSL_CERT_FILE: '/etc/ssl/certs/corp.pem',
      npm_config_registry: 'https://npm.corp.example/',
      HTTPS_PROXY: 'http://proxy.corp.example:3128',
    });
    expect(config.setup.caBundle).toBe('/etc/ssl/certs/corp.pem');
    expect(config.setup.npmRegistry).toBe('https://npm.corp.example/');
    expect(config.setup.httpsProxy).toBe('http://proxy.corp.example:3128');
    expect(loadConfig({ SSL_CERT_FILE: '/a.pem', TEE_CA_BUNDLE: '/b.pem' }).setup.caBundle).toBe(
      '/b.pem',
    );
    expect(() => loadConfig({ TEE_NPM_REGISTRY: 'ftp://x' })).toThrow(/TEE_NPM_REGISTRY/);
  });

  it('runs user code outside gVisor only when explicitly allowed', () => {
    expect(loadConfig({}).docker.allowInsecureRuntime).toBe(false);
    expect(loadConfig({ TEE_ALLOW_INSECURE_RUNTIME: '1' }).docker.allowInsecureRuntime).toBe(true);
    expect(loadConfig({ TEE_ALLOW_INSECURE_RUNTIME: '0' }).docker.allowInsecureRuntime).toBe(false);
    expect(() => loadConfig({ TEE_ALLOW_INSECURE_RUNTIME: 'yes' })).toThrow(
      /TEE_ALLOW_INSECURE_RUNTIME/,
    );
  });

  it('derives the request size and deadline caps from the caps they must fit', () => {
    const { http } = loadConfig({});
    // The modules (8 MiB) twice over for JSON's escapes, plus 1 MiB.
    expect(http.maxRequestBytes).toBe(17 * 1024 * 1024);
    // Twice the longest execution (300 s) with its sandbox's start (15 s).
    expect(http.maxCallTimeoutMs).toBe(630_000);
    const raised = loadConfig({ TEE_MAX_EVENT_BYTES: String(4 * 1024 * 1024) }).http;
    expect(raised.maxRequestBytes).toBe(33 * 1024 * 1024);
    expect(loadConfig({ TEE_MAX_REQUEST_BYTES: '65536' }).http.maxRequestBytes).toBe(65_536);
    expect(() =>
      loadConfig({ TEE_HTTP_HEADERS_TIMEOUT_MS: '5000', TEE_HTTP_REQUEST_TIMEOUT_MS: '1000' }),
    ).toThrow(/TEE_HTTP_HEADERS_TIMEOUT_MS is above TEE_HTTP_REQUEST_TIMEOUT_MS/);
  });

  it('refuses a default above its maximum', () => {
    expect(() => loadConfig({ TEE_DEFAULT_MEMORY_MB: '4096', TEE_MAX_MEMORY_MB: '1024' })).toThrow(
      /TEE_DEFAULT_MEMORY_MB is above TEE_MAX_MEMORY_MB/,
    );
  });

  it('reads the session timeouts, queue and quota, and refuses a default above its maximum', () => {
    const config = loadConfig({});
    expect(config.sessions).toEqual({
      defaults: { idleTimeoutMs: 300_000, maxLifetimeMs: 3_600_000 },
      maxima: { idleTimeoutMs: 3_600_000, maxLifetimeMs: 86_400_000 },
      maxQueuedCalls: 16,
    });
    expect(config.quotas.openSessions).toBe(10);
    const set = loadConfig({
      TEE_SESSION_IDLE_TIMEOUT_MS: '60000',
      TEE_SESSION_MAX_IDLE_TIMEOUT_MS: '120000',
      TEE_SESSION_MAX_LIFETIME_MS: '600000',
      TEE_SESSION_MAX_MAX_LIFETIME_MS: '900000',
      TEE_SESSION_MAX_QUEUED_CALLS: '0',
      TEE_QUOTA_OPEN_SESSIONS: '3',
    });
    expect(set.sessions).toEqual({
      defaults: { idleTimeoutMs: 60_000, maxLifetimeMs: 600_000 },
      maxima: { idleTimeoutMs: 120_000, maxLifetimeMs: 900_000 },
      maxQueuedCalls: 0,
    });
    expect(set.quotas.openSessions).toBe(3);

    let error: unknown;
    try {
      loadConfig({
        TEE_SESSION_IDLE_TIMEOUT_MS: '7200000',
        TEE_QUOTA_OPEN_SESSIONS: '0',
        TEE_SESSION_MAX_MAX_LIFETIME_MS: '4294967295',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const { problems } = error as ConfigError;
    expect(problems).toContain(
      'TEE_SESSION_IDLE_TIMEOUT_MS is above TEE_SESSION_MAX_IDLE_TIMEOUT_MS',
    );
    expect(problems.join('\n')).toMatch(/TEE_QUOTA_OPEN_SESSIONS/);
    expect(problems.join('\n')).toMatch(/TEE_SESSION_MAX_MAX_LIFETIME_MS/);
  });
});

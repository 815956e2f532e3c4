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

  it('refuses a default above its maximum', () => {
    expect(() => loadConfig({ TEE_DEFAULT_MEMORY_MB: '4096', TEE_MAX_MEMORY_MB: '1024' })).toThrow(
      /TEE_DEFAULT_MEMORY_MB is above TEE_MAX_MEMORY_MB/,
    );
  });
});

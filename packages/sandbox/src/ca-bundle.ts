/** Where a sandbox finds the CA bundle it is given. */
export const SANDBOX_CA_BUNDLE_PATH = '/etc/assist-tee/ca.pem';

/**
 * Mounts a host CA bundle (a TLS-intercepting proxy's or a private registry's CA) into a
 * sandbox with network, and points both runtimes at it. An empty path gives nothing.
 */
export function caBundleAccess(source: string): {
  env: string[];
  files: { source: string; target: string }[];
} {
  if (source === '') return { env: [], files: [] };
  return {
    env: [
      `DENO_CERT=${SANDBOX_CA_BUNDLE_PATH}`,
      `NODE_EXTRA_CA_CERTS=${SANDBOX_CA_BUNDLE_PATH}`,
      `SSL_CERT_FILE=${SANDBOX_CA_BUNDLE_PATH}`,
    ],
    files: [{ source, target: SANDBOX_CA_BUNDLE_PATH }],
  };
}

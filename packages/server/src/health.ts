/** One dependency a process needs, checked by GET /readyz (and /healthz) and gRPC health. */
export interface HealthCheck {
  name: string;
  /** Resolves when the dependency is reachable; rejects with the reason otherwise. */
  check(): Promise<void>;
}

export interface HealthReport {
  ok: boolean;
  checks: Record<string, string>;
}

export async function checkHealth(checks: HealthCheck[], timeoutMs = 2_000): Promise<HealthReport> {
  const results = await Promise.all(
    checks.map(async (healthCheck) => {
      const { name } = healthCheck;
      try {
        await withTimeout(healthCheck.check(), timeoutMs);
        return [name, 'ok'] as const;
      } catch (error) {
        return [name, error instanceof Error ? error.message : String(error)] as const;
      }
    }),
  );
  return {
    ok: results.every(([, result]) => result === 'ok'),
    checks: Object.fromEntries(results),
  };
}

/** The part of an HTTP/1.1 or HTTP/2 response that a health answer needs. */
export interface HealthResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: string): unknown;
}

/**
 * Readiness: 200 with every check "ok", or 503 with the reason of each failing check. Warnings
 * (an insecure development setting) are listed whatever the status.
 */
export async function serveHealth(
  checks: HealthCheck[],
  response: HealthResponse,
  warnings: readonly string[] = [],
): Promise<void> {
  const report = await checkHealth(checks);
  const status = report.ok ? 'ok' : 'unavailable';
  writeHealth(response, report.ok ? 200 : 503, { status, checks: report.checks }, warnings);
}

/** Liveness: the process answers, whatever its dependencies say. */
export function serveLiveness(response: HealthResponse, warnings: readonly string[] = []): void {
  writeHealth(response, 200, { status: 'ok' }, warnings);
}

function writeHealth(
  response: HealthResponse,
  status: number,
  body: object,
  warnings: readonly string[],
): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ ...body, ...(warnings.length > 0 ? { warnings } : {}) }));
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

export interface ServiceProcess {
  child: ChildProcess;
  url: string;
}

/** Starts `services/<name>/dist/main.js` and resolves with the URL it logs once serving. */
export async function startService(
  name: string,
  env: Record<string, string>,
): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [`${root}services/${name}/dist/main.js`], {
    // Port 0 for the API and the egress proxy: test processes run side by side.
    env: {
      ...process.env,
      TEE_EGRESS_PROXY_PORT: '0',
      ...env,
      TEE_PORT: '0',
      TEE_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in time`)), 30_000);
    child.once('exit', (code) => reject(new Error(`${name} exited with code ${code}`)));
    lines.on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; url?: string };
      if (entry.msg === 'serving' && entry.url) {
        clearTimeout(timer);
        resolve(entry.url);
      }
    });
  });
  return { child, url };
}

/** SIGTERM, or SIGKILL for a crash; resolves with the exit code (null when killed). */
export async function stopService(
  service: ServiceProcess,
  signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM',
): Promise<number | null> {
  if (service.child.exitCode !== null || service.child.signalCode !== null) {
    return service.child.exitCode;
  }
  service.child.kill(signal);
  const [code] = (await once(service.child, 'exit')) as [number | null];
  return code;
}

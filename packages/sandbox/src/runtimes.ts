import type Docker from 'dockerode';
import { type EngineRuntime, runtimeProblems } from './verify.js';

const RUNTIME_CHECK_MS = 10_000;

/** The engine's sandbox runtimes (with and without network) and whether they are gVisor. */
export class Runtimes {
  private gvisorCheckedAt = 0;

  constructor(
    private readonly docker: Docker,
    readonly runtime: string,
    readonly networkRuntime: string,
  ) {}

  /** Whether the engine has the configured sandbox runtimes (with and without network). */
  async hasRuntime(): Promise<boolean> {
    const runtimes = await this.engineRuntimes();
    return Object.hasOwn(runtimes, this.runtime) && Object.hasOwn(runtimes, this.networkRuntime);
  }

  /** What keeps the configured runtimes from being gVisor as intended; empty when they are. */
  async runtimeProblems(): Promise<string[]> {
    const runtimes = await this.engineRuntimes();
    return [
      ...runtimeProblems(this.runtime, runtimes[this.runtime], '--network=none'),
      ...runtimeProblems(this.networkRuntime, runtimes[this.networkRuntime], '--network=host'),
    ];
  }

  async assertGvisor(): Promise<void> {
    if (Date.now() - this.gvisorCheckedAt < RUNTIME_CHECK_MS) return;
    const problems = await this.runtimeProblems();
    if (problems.length > 0) {
      throw new Error(`refusing to run user code outside gVisor: ${problems.join('; ')}`);
    }
    this.gvisorCheckedAt = Date.now();
  }

  private async engineRuntimes(): Promise<Record<string, EngineRuntime>> {
    const info = (await this.docker.info()) as { Runtimes?: Record<string, EngineRuntime> };
    return info.Runtimes ?? {};
  }
}

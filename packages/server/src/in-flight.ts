import { setTimeout as delay } from 'node:timers/promises';
import { Code, ConnectError } from '@connectrpc/connect';

interface Work {
  controller: AbortController;
  key: string | undefined;
  settled: Promise<unknown>;
}

/**
 * The work a service has in hand (executions, setups), so that a graceful stop can refuse new
 * work, wait for what runs, and cut short what outlives the grace period.
 */
export class InFlight {
  readonly #work = new Set<Work>();
  #draining = false;

  constructor(private readonly service: string) {}

  /**
   * Runs `work`, or refuses with Unavailable once the service is stopping (clients retry on
   * another instance). The signal aborts, with the reason as an Error, when the work must end
   * early; `key` lets `abort` find it (an environment id).
   */
  async run<T>(work: (signal: AbortSignal) => Promise<T>, key?: string): Promise<T> {
    if (this.#draining) {
      throw new ConnectError(
        `the ${this.service} service is shutting down; try again`,
        Code.Unavailable,
      );
    }
    const controller = new AbortController();
    const running = work(controller.signal);
    const entry: Work = { controller, key, settled: running.catch(() => undefined) };
    this.#work.add(entry);
    try {
      return await running;
    } finally {
      this.#work.delete(entry);
    }
  }

  get size(): number {
    return this.#work.size;
  }

  /** Aborts the work running under `key`; returns how many were aborted. */
  abort(key: string, reason: Error): number {
    let aborted = 0;
    for (const work of this.#work) {
      if (work.key !== key) continue;
      work.controller.abort(reason);
      aborted += 1;
    }
    return aborted;
  }

  /**
   * Refuses new work, waits up to `graceMs` for what runs, then aborts the rest with `reason`
   * and waits for it to wind up (each piece removes its sandbox and records its outcome).
   */
  async drain(graceMs: number, reason: Error): Promise<void> {
    this.#draining = true;
    const allSettled = () => Promise.all([...this.#work].map((work) => work.settled));
    const grace = new AbortController();
    const inTime = await Promise.race([
      allSettled().then(() => true),
      delay(graceMs, false, { signal: grace.signal }).catch(() => false),
    ]);
    grace.abort();
    if (inTime) return;
    for (const work of this.#work) work.controller.abort(reason);
    await allSettled();
  }
}

/** Why work was cut short, as the abort signal's reason; `name` becomes the outcome's error name. */
export function abortReason(name: string, message: string): Error {
  const reason = new Error(message);
  reason.name = name;
  return reason;
}

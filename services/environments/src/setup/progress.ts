import { create } from '@bufbuild/protobuf';
import { timestampNow } from '@bufbuild/protobuf/wkt';
import {
  type Environment,
  EnvironmentStatus,
  SetupPhase,
  type WatchEnvironmentResponse,
  WatchEnvironmentResponseSchema,
} from '@assist-tee/proto';

/** What a watcher that joins late still gets of the output: the most recent lines. */
export const RECENT_OUTPUT = { lines: 1_000, bytes: 256 * 1024 };

/** What a setup tells its watchers. */
export interface SetupReporter {
  phase(phase: SetupPhase): void;
  /** A line of the package manager's output. */
  output(text: string): void;
  /** The setup ended: its final phase, then the environment. */
  finish(environment: Environment): void;
  /**
   * No more news from this setup; a no-op after finish. Without finish (the row was never
   * written, or recording the outcome failed), watchers fall back to reading the row.
   */
  close(): void;
}

/**
 * The setups this instance runs, by environment id, each with its phases and a bounded tail of
 * its output, for WatchEnvironment. A setup is here from before its row is written until it
 * ends; a watcher that comes later reads the row.
 */
export class SetupProgress {
  readonly #setups = new Map<string, SetupLog>();

  /** Starts the record of a setup; `close` it when the setup ends, however it ends. */
  begin(environmentId: string): SetupReporter {
    const log = new SetupLog();
    this.#setups.set(environmentId, log);
    const close = () => {
      log.end();
      if (this.#setups.get(environmentId) === log) this.#setups.delete(environmentId);
    };
    return {
      phase: (phase) => log.append(phaseMessage(phase), 0),
      output: (text) =>
        log.append(
          create(WatchEnvironmentResponseSchema, {
            event: { case: 'output', value: { text, time: timestampNow() } },
          }),
          Buffer.byteLength(text),
        ),
      finish: (environment) => {
        if (log.ended) return;
        log.append(phaseMessage(finalPhase(environment)), 0);
        log.append(
          create(WatchEnvironmentResponseSchema, {
            event: { case: 'environment', value: environment },
          }),
          0,
        );
        close();
      },
      close,
    };
  }

  /** The record of the setup of this environment, when this instance runs it. */
  find(environmentId: string): SetupLog | undefined {
    return this.#setups.get(environmentId);
  }
}

/**
 * READY or FAILED, as the setup of an environment in this state ended. A DELETED one had been
 * READY when its setup left no error and, with dependencies, their lockfile; otherwise it
 * failed, or was deleted before its setup ended.
 */
export function finalPhase(environment: Environment): SetupPhase {
  const { status, error, lockfile, dependencies } = environment;
  const installs = (dependencies?.npm.length ?? 0) + (dependencies?.url.length ?? 0) > 0;
  const completed = error === '' && (lockfile !== '' || !installs);
  return status === EnvironmentStatus.READY || (status === EnvironmentStatus.DELETED && completed)
    ? SetupPhase.READY
    : SetupPhase.FAILED;
}

export function phaseMessage(phase: SetupPhase): WatchEnvironmentResponse {
  return create(WatchEnvironmentResponseSchema, {
    event: { case: 'phase', value: { phase, time: timestampNow() } },
  });
}

interface Entry {
  seq: number;
  message: WatchEnvironmentResponse;
  /** Output bytes; 0 for phases and the environment, which are always kept. */
  bytes: number;
}

/**
 * One setup's messages in order. Phases and the final environment are all kept; output lines
 * only up to RECENT_OUTPUT, oldest dropped first, so a watcher that falls behind skips lines
 * rather than making the service hold them.
 */
export class SetupLog {
  readonly #entries: Entry[] = [];
  #nextSeq = 0;
  #outputLines = 0;
  #outputBytes = 0;
  #wake = signalled();
  ended = false;

  append(message: WatchEnvironmentResponse, bytes: number): void {
    if (this.ended) return;
    const isOutput = message.event.case === 'output';
    this.#entries.push({ seq: this.#nextSeq++, message, bytes });
    if (isOutput) {
      this.#outputLines += 1;
      this.#outputBytes += bytes;
      while (this.#outputLines > RECENT_OUTPUT.lines || this.#outputBytes > RECENT_OUTPUT.bytes) {
        const oldest = this.#entries.findIndex((entry) => entry.message.event.case === 'output');
        const [dropped] = this.#entries.splice(oldest, 1);
        this.#outputLines -= 1;
        this.#outputBytes -= dropped!.bytes;
      }
    }
    this.#wake.fire();
  }

  end(): void {
    this.ended = true;
    this.#wake.fire();
  }

  /**
   * Everything kept so far, then each new message, until the log ends, or `signal` aborts while
   * it waits (what has come is still passed on: a setup cut short by a stopping service ends
   * just before the service aborts its calls).
   */
  async *follow(signal: AbortSignal): AsyncGenerator<WatchEnvironmentResponse> {
    let next = 0;
    const stopped = aborted(signal);
    for (;;) {
      const fresh = this.#entries.filter((entry) => entry.seq >= next);
      if (fresh.length === 0) {
        if (this.ended || signal.aborted) return;
        await Promise.race([this.#wake.promise, stopped]);
        continue;
      }
      for (const entry of fresh) {
        next = entry.seq + 1;
        yield entry.message;
      }
    }
  }
}

/** A promise the next `fire` resolves; each fire arms a new one. */
function signalled(): { promise: Promise<void>; fire(): void } {
  let resolve!: () => void;
  const state = {
    promise: new Promise<void>((r) => (resolve = r)),
    fire() {
      resolve();
      state.promise = new Promise<void>((r) => (resolve = r));
    },
  };
  return state;
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

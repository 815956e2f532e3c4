import type { Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import type Docker from 'dockerode';
import type { Logger } from '@assist-tee/logger';
import { dockerStatus, isNotFound } from './errors.js';
import { forceRemove } from './force-remove.js';

export interface SandboxExit {
  exitCode: number;
  oomKilled: boolean;
}

export interface Sandbox {
  readonly id: string;
  /** Container stdin (attached before start). end() closes the container's stdin. */
  readonly stdin: NodeJS.WritableStream;
  /** Demultiplexed container stdout; ends when the container's output ends. */
  readonly stdout: NodeJS.ReadableStream;
  readonly stderr: NodeJS.ReadableStream;
  /** Resolves once the container has exited, with its exit code and whether the kernel OOM-killed it. Never rejects. */
  readonly exited: Promise<SandboxExit>;
  /** SIGKILL; idempotent, never throws for an already-stopped or removed container. */
  kill(): Promise<void>;
  /**
   * Force-removes (the engine kills it first); idempotent. Whoever needs `exited` awaits it
   * before: once removal was asked for, the exit is no longer looked into (no inspect, no OOM
   * events), only reported.
   */
  remove(): Promise<void>;
}

/** Exit code of a SIGKILLed process, reported when the real one cannot be known any more. */
const KILLED_EXIT_CODE = 137;
/** runsc's own exit code when the kernel's OOM killer picks one of its processes, not the handler's. */
const RUNSC_KILLED_EXIT_CODE = 2;
/** How long after an unexplained SIGKILL the engine's OOM event may still arrive. */
const OOM_EVENT_GRACE_MS = 500;

/** Wraps the hijacked attach socket: writes after the container is gone are dropped, not thrown. */
function stdinWriter(socket: Socket): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (socket.destroyed || !socket.writable) return callback();
      socket.write(chunk, () => callback());
    },
    final(callback) {
      // Half-close: with StdinOnce the engine closes the container's stdin, output keeps flowing.
      if (!socket.destroyed && socket.writable) socket.end();
      callback();
    },
  });
}

export interface SandboxHandleOptions {
  container: Docker.Container;
  socket: Socket;
  docker: Docker;
  logger: Logger;
}

/** A started sandbox container. Created by SandboxDriver.start once the container runs. */
export class SandboxHandle implements Sandbox {
  readonly id: string;
  readonly stdin: Writable;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly exited: Promise<SandboxExit>;
  private readonly container: Docker.Container;
  private readonly socket: Socket;
  private readonly logger: Logger;
  private waitStarted = false;
  private removal: Promise<void> | undefined;
  /** A SIGKILL we sent is not an OOM: only unexplained ones are looked into. */
  private killRequested = false;
  private readonly startedAt = Date.now();
  private readonly docker: Docker;
  private resolveExited!: (exit: SandboxExit) => void;

  constructor(options: SandboxHandleOptions) {
    this.container = options.container;
    this.docker = options.docker;
    this.id = options.container.id;
    this.socket = options.socket;
    this.logger = options.logger.child({ containerId: this.id.slice(0, 12) });
    this.stdin = stdinWriter(this.socket);
    // Writes after end() are the caller's bug; they must not crash the process.
    this.stdin.on('error', (error) => this.logger.debug({ err: error }, 'stdin error'));
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));

    // The output streams only ever end: an 'error' on them would crash a consumer without a listener.
    const endOutput = () => {
      this.stdout.end();
      this.stderr.end();
    };
    options.docker.modem.demuxStream(this.socket, this.stdout, this.stderr);
    this.socket.on('end', endOutput);
    this.socket.on('close', endOutput);
    this.socket.on('error', (error) => {
      this.logger.debug({ err: error }, 'attach stream error');
      endOutput();
    });
  }

  /** Starts watching for the exit. Called right after start: 'not-running' then cannot race it. */
  watchExit(): void {
    if (this.waitStarted) return;
    this.waitStarted = true;
    void this.waitForExit().then(
      (exit) => {
        this.logger.debug(exit, 'container exited');
        this.resolveExited(exit);
      },
      (error: unknown) => {
        this.logger.warn({ err: error }, 'waiting for the container failed');
        this.resolveExited({ exitCode: KILLED_EXIT_CODE, oomKilled: false });
      },
    );
  }

  private async waitForExit(): Promise<SandboxExit> {
    let waited: { StatusCode?: number } | undefined;
    try {
      waited = (await this.container.wait({ condition: 'not-running' })) as { StatusCode?: number };
    } catch (error) {
      // Removed before or while we waited: the inspect below says what can still be known.
      this.logger.debug({ err: error }, 'wait failed');
    }
    // Removed on purpose: nobody reads this exit any more, so it costs no engine call.
    if (this.removal !== undefined) {
      return { exitCode: waited?.StatusCode ?? KILLED_EXIT_CODE, oomKilled: false };
    }
    let exit: SandboxExit;
    try {
      const info = await this.container.inspect();
      if (waited === undefined && info.State.Running) {
        // The wait broke (engine restart, socket error) while the container still runs.
        throw new Error('lost track of a running container');
      }
      exit = {
        exitCode: waited?.StatusCode ?? info.State.ExitCode,
        oomKilled: info.State.OOMKilled,
      };
    } catch (error) {
      if (!isNotFound(error)) throw error;
      exit = { exitCode: waited?.StatusCode ?? KILLED_EXIT_CODE, oomKilled: false };
    }
    const killed = exit.exitCode === KILLED_EXIT_CODE || exit.exitCode === RUNSC_KILLED_EXIT_CODE;
    if (killed && !exit.oomKilled && !this.killRequested) {
      exit.oomKilled = await this.oomEventSeen();
    }
    return exit;
  }

  /**
   * Whether the engine reported an OOM for this container. The engine only records OOMKilled
   * when its OOM event arrives before the exit event; under load (measured with runsc) it can
   * come after, so an unexplained kill (the handler's SIGKILL, or runsc dying whole) looks for
   * the event itself, briefly.
   */
  private async oomEventSeen(): Promise<boolean> {
    try {
      const events = await this.docker.getEvents({
        since: Math.floor(this.startedAt / 1000) - 1,
        until: (Date.now() + OOM_EVENT_GRACE_MS) / 1000,
        filters: { container: [this.id], event: ['oom'] },
      });
      let text = '';
      for await (const chunk of events) text += String(chunk);
      const seen = text.includes('"oom"');
      if (seen) this.logger.debug('OOM event arrived after the exit');
      return seen;
    } catch (error) {
      this.logger.warn({ err: error }, 'reading OOM events failed');
      return false;
    }
  }

  async kill(): Promise<void> {
    // Set before the call: our SIGKILL can end the wait before the kill request returns.
    const killedBefore = this.killRequested;
    this.killRequested = true;
    try {
      await this.container.kill({ signal: 'SIGKILL' });
      this.logger.debug('container killed');
    } catch (error) {
      // 404: already removed; 409: not running (exited, or removal in progress). Either way
      // this kill did not end it, so an unexplained exit is still looked into.
      const status = dockerStatus(error);
      if (status === 404 || status === 409) {
        this.killRequested = killedBefore;
        return;
      }
      // A kill that races the exit can fail inside the runtime; a stopped container is fine.
      if (status === 500 && !(await this.isRunning())) return;
      throw error;
    }
  }

  remove(): Promise<void> {
    // One removal per sandbox: later calls share it, so none returns before the container is gone.
    this.removal ??= this.removeOnce();
    return this.removal;
  }

  private async removeOnce(): Promise<void> {
    // A forced removal is the engine's kill, wait and delete in one call.
    this.killRequested = true;
    try {
      if ((await forceRemove(this.container)) === 'busy') {
        // Someone else's removal is in progress: wait until it is done.
        await this.container.wait({ condition: 'removed' }).catch((waitError: unknown) => {
          if (!isNotFound(waitError)) throw waitError;
        });
      }
      this.logger.debug('container removed');
    } finally {
      this.stdin.destroy();
      this.socket.destroy();
    }
  }

  private async isRunning(): Promise<boolean> {
    try {
      return (await this.container.inspect()).State.Running;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }
}

import { setTimeout as delay } from 'node:timers/promises';
import { create } from '@bufbuild/protobuf';
import type { EnvironmentRow } from '@assist-tee/db';
import {
  type WatchEnvironmentRequest,
  type WatchEnvironmentResponse,
  WatchEnvironmentResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant } from '@assist-tee/server';
import type { EnvironmentsDeps } from '../deps.js';
import { toEnvironmentMessage } from '../environment-message.js';
import { finalPhase, phaseMessage } from '../setup/progress.js';
import { findEnvironment } from './get-environment.js';

/** How often a watcher of a setup that another instance runs reads the row. */
const POLL_MS = 1_000;

/**
 * Streams the setup of an environment as the instance that runs it reports it: the phases and
 * recent output so far, then the rest as it comes, then the environment. An environment whose
 * setup is not running here (over, or on another instance) is read from its row, polled while
 * it is PENDING. The stream ends with an error, never without the environment, when the call
 * is cut off (deadline, client gone, the server stopping).
 */
export function watchEnvironment(deps: EnvironmentsDeps) {
  return async function* (
    request: WatchEnvironmentRequest,
    context: HandlerContext,
  ): AsyncGenerator<WatchEnvironmentResponse> {
    const tenantId = callerTenant(context);
    let row = await findEnvironment(deps.db.em(), request.id, tenantId);
    if (row.status === 'PENDING') {
      const log = deps.setupProgress.find(row.id);
      if (log !== undefined) {
        for await (const message of log.follow(context.signal)) {
          yield message;
          if (message.event.case === 'environment') return;
        }
        context.signal.throwIfAborted();
      }
      // Not set up here, or its outcome was not recorded here: the row says how it ends.
      row = await settled(deps, row.id, tenantId, context.signal);
    }
    const environment = toEnvironmentMessage(row);
    yield phaseMessage(finalPhase(environment));
    yield create(WatchEnvironmentResponseSchema, {
      event: { case: 'environment', value: environment },
    });
  };
}

/** The row once it is no longer PENDING; throws the signal's reason when that aborts first. */
async function settled(
  deps: EnvironmentsDeps,
  id: string,
  tenantId: string | undefined,
  signal: AbortSignal,
): Promise<EnvironmentRow> {
  for (;;) {
    const row = await findEnvironment(deps.db.em(), id, tenantId);
    if (row.status !== 'PENDING') return row;
    await delay(POLL_MS, undefined, { signal }).catch(() => undefined);
    signal.throwIfAborted();
  }
}

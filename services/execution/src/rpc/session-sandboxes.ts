import { create } from '@bufbuild/protobuf';
import { admin } from '@assist-tee/proto';
import type { ExecutionDeps } from '../deps.js';

/** The reaper's view of sessions (admin.SessionSandboxService); operator-only by its path. */
export function sessionSandboxes(deps: ExecutionDeps) {
  return {
    endLostSessions: async (): Promise<admin.EndLostSessionsResponse> =>
      create(admin.EndLostSessionsResponseSchema, {
        sessionIds: await deps.sessions.endStaleLost(),
      }),
    listSessionSandboxes: async (): Promise<admin.ListSessionSandboxesResponse> =>
      create(admin.ListSessionSandboxesResponseSchema, {
        sandboxes: (await deps.sessions.sandboxes()).flatMap((row) =>
          row.containerId === null
            ? []
            : [{ sessionId: row.id, containerId: row.containerId, instanceId: row.instanceId }],
        ),
      }),
  };
}

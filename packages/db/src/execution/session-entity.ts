import { defineEntity, p } from '@mikro-orm/core';
import type { ExecutionLimitsRecord } from './execution-entity.js';

export type SessionStatusName = 'ACTIVE' | 'ENDED';

/** Why a session ended (proto SessionEndReason without its prefix). */
export type SessionEndReasonName =
  | 'REQUESTED'
  | 'IDLE_TIMEOUT'
  | 'MAX_LIFETIME'
  | 'ENVIRONMENT_DELETED'
  | 'CALL_TIMEOUT'
  | 'OOM'
  | 'OUTPUT_LIMIT'
  | 'PROCESS_LIMIT'
  | 'CRASHED'
  | 'LOST';

// Must match migrations/ exactly: the drift test in packages/db fails on any difference.
export const SessionEntitySchema = defineEntity({
  name: 'SessionEntity',
  schema: 'execution',
  tableName: 'session',
  properties: {
    id: p.uuid().primary(),
    // No foreign key: environments live in another service's schema.
    environmentId: p.uuid(),
    tenantId: p.text(),
    status: p.enum(['ACTIVE', 'ENDED'] as const),
    limits: p.json<ExecutionLimitsRecord>(),
    idleTimeoutMs: p.integer(),
    maxLifetimeMs: p.integer(),
    labels: p.json<Record<string, string>>(),
    // Null while ACTIVE.
    endReason: p
      .enum([
        'REQUESTED',
        'IDLE_TIMEOUT',
        'MAX_LIFETIME',
        'ENVIRONMENT_DELETED',
        'CALL_TIMEOUT',
        'OOM',
        'OUTPUT_LIMIT',
        'PROCESS_LIMIT',
        'CRASHED',
        'LOST',
      ] as const)
      .strictNullable(),
    endMessage: p.text().strictNullable(),
    // The call whose outcome ended it; no foreign key, so a session row never waits on an execution row.
    endExecutionId: p.uuid().strictNullable(),
    callCount: p.integer().default(0),
    warm: p.boolean(),
    /** The service instance whose sandbox it is. */
    instanceId: p.text(),
    /** Its sandbox's container on that instance (what the reaper must not take for an orphan). */
    containerId: p.text().strictNullable(),
    createdAt: p.datetime(),
    lastCallAt: p.datetime().strictNullable(),
    expiresAt: p.datetime(),
    endedAt: p.datetime().strictNullable(),
  },
  indexes: [
    {
      // A tenant's sessions newest first with a (created_at, id) keyset cursor; the environment and
      // status filters, and counting a tenant's ACTIVE ones (quota), read the same rows.
      name: 'session_tenant_id_created_at_id_idx',
      columns: [
        { name: 'tenant_id' },
        { name: 'created_at', sort: 'desc' },
        // `id` ascending, as in the execution index (see there for why).
        { name: 'id' },
      ],
    },
    {
      // An environment's sessions, newest first (listing by environment, ending them on deletion).
      name: 'session_environment_id_created_at_id_idx',
      columns: [{ name: 'environment_id' }, { name: 'created_at', sort: 'desc' }, { name: 'id' }],
    },
    {
      // The ACTIVE sessions an instance holds (ending them as LOST when it stops or dies).
      name: 'session_instance_id_status_idx',
      properties: ['instanceId', 'status'],
    },
  ],
});

/** One session row; create with `em.create(SessionEntity, {...})`. */
export class SessionEntity extends SessionEntitySchema.class {}
SessionEntitySchema.setClass(SessionEntity);

export type SessionRow = SessionEntity;

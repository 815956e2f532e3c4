import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { SessionRow } from '@assist-tee/db';
import { type Session, SessionEndReason, SessionSchema, SessionStatus } from '@assist-tee/proto';

/** The session as the API (and its events) return it. */
export function toSessionMessage(row: SessionRow): Session {
  return create(SessionSchema, {
    id: row.id,
    environmentId: row.environmentId,
    tenantId: row.tenantId,
    status: SessionStatus[row.status],
    limits: { ...row.limits, maxOutputBytes: BigInt(row.limits.maxOutputBytes) },
    idleTimeoutMs: row.idleTimeoutMs,
    maxLifetimeMs: row.maxLifetimeMs,
    labels: row.labels,
    endReason: SessionEndReason[row.endReason ?? 'UNSPECIFIED'],
    endMessage: row.endMessage ?? '',
    endExecutionId: row.endExecutionId ?? '',
    callCount: BigInt(row.callCount),
    warm: row.warm,
    createTime: timestampFromDate(row.createdAt),
    lastCallTime: row.lastCallAt ? timestampFromDate(row.lastCallAt) : undefined,
    expireTime: timestampFromDate(row.expiresAt),
    endTime: row.endedAt ? timestampFromDate(row.endedAt) : undefined,
  });
}

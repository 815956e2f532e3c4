import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { EnvironmentRow } from '@assist-tee/db';
import { type Environment, EnvironmentSchema, EnvironmentStatus, Runtime } from '@assist-tee/proto';

export function toEnvironmentMessage(row: EnvironmentRow): Environment {
  const optionalTime = (date: Date | null | undefined) =>
    date ? timestampFromDate(date) : undefined;
  return create(EnvironmentSchema, {
    id: row.id,
    tenantId: row.tenantId,
    status: EnvironmentStatus[row.status],
    runtime: Runtime[row.runtime],
    mainModule: row.mainModule,
    modulePaths: row.modulePaths,
    modulesSizeBytes: BigInt(row.modulesSizeBytes),
    dependencies: row.dependencies,
    permissions: row.permissions,
    ttlSeconds: row.ttlSeconds,
    labels: row.labels,
    error: row.error ?? '',
    lockfile: row.lockfile ?? '',
    executionCount: BigInt(row.executionCount),
    createTime: timestampFromDate(row.createdAt),
    updateTime: timestampFromDate(row.updatedAt),
    lastUsedTime: optionalTime(row.lastUsedAt),
    deleteTime: optionalTime(row.deletedAt),
  });
}

import { create, fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import {
  timestampFromDate,
  timestampFromMs,
  type Value,
  ValueSchema,
} from '@bufbuild/protobuf/wkt';
import type { ExecutionRow } from '@assist-tee/db';
import {
  ColdStartReason,
  type Execution,
  ExecutionSchema,
  ExecutionStatus,
  type LogEntry,
  LogEntrySchema,
  LogLevel,
} from '@assist-tee/proto';
import type { LogLine } from './runner-protocol.js';

export function toLogEntry(line: LogLine): LogEntry {
  return create(LogEntrySchema, {
    level: LogLevel[line.level],
    message: line.message,
    time: timestampFromMs(line.time),
  });
}

export function jsonFromValue(value: Value | undefined): JsonValue {
  return value === undefined ? null : toJson(ValueSchema, value);
}

/** A row read without its logs and result, which a brief message leaves out anyway. */
export type BriefExecutionRow = Pick<
  ExecutionRow,
  Exclude<keyof ExecutionRow & string, 'logs' | 'result'>
>;

/** The execution as the API returns it; `brief` leaves out logs and result (lists, events). */
export function toExecutionMessage(row: BriefExecutionRow, options: { brief: true }): Execution;
export function toExecutionMessage(row: ExecutionRow, options?: { brief?: boolean }): Execution;
export function toExecutionMessage(
  row: BriefExecutionRow & Partial<Pick<ExecutionRow, 'logs' | 'result'>>,
  options: { brief?: boolean } = {},
): Execution {
  const brief = options.brief ?? false;
  return create(ExecutionSchema, {
    id: row.id,
    environmentId: row.environmentId,
    tenantId: row.tenantId,
    sessionId: row.sessionId ?? '',
    traceId: row.traceId ?? '',
    status: ExecutionStatus[row.status],
    // A handler may return null: that is a result too, so presence follows the status.
    result:
      brief || row.status !== 'SUCCEEDED' ? undefined : fromJson(ValueSchema, row.result ?? null),
    error: row.error ?? undefined,
    logs: brief ? [] : (row.logs ?? []).map(toLogEntry),
    outputTruncated: row.outputTruncated,
    exitCode: row.exitCode ?? 0,
    durationMs: row.durationMs ?? 0,
    limits: { ...row.limits, maxOutputBytes: BigInt(row.limits.maxOutputBytes) },
    warm: row.warm,
    coldStartReason: ColdStartReason[row.coldStartReason ?? 'UNSPECIFIED'],
    createTime: timestampFromDate(row.createdAt),
    finishTime: row.finishedAt ? timestampFromDate(row.finishedAt) : undefined,
  });
}

import { defineEntity, p } from '@mikro-orm/core';
import type { JsonValue } from '../json-value.js';

export type ExecutionStatusName =
  | 'RUNNING'
  | 'SUCCEEDED'
  | 'HANDLER_ERROR'
  | 'TIMEOUT'
  | 'OOM'
  | 'OUTPUT_LIMIT'
  | 'PROCESS_LIMIT'
  | 'SANDBOX_ERROR';

/** Why an execution started a sandbox of its own (proto ColdStartReason without its prefix). */
export type ColdStartReasonName = 'NO_POOL' | 'LIMITS' | 'EVICTED' | 'POOL_EMPTY';

export interface ExecutionErrorRecord {
  name: string;
  message: string;
  stack: string;
}

export interface ExecutionLogRecord {
  level: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  message: string;
  /** Epoch milliseconds. */
  time: number;
}

export interface ExecutionLimitsRecord {
  timeoutMs: number;
  memoryMb: number;
  maxOutputBytes: number;
  cpuMillicores: number;
}

// Must match migrations/ exactly: test/schema-drift.test.ts fails on any difference.
export const ExecutionEntitySchema = defineEntity({
  name: 'ExecutionEntity',
  schema: 'execution',
  tableName: 'execution',
  properties: {
    id: p.uuid().primary(),
    // No foreign key: environments live in another service's schema.
    environmentId: p.uuid(),
    tenantId: p.text(),
    // The session it ran in; null outside one.
    sessionId: p.uuid().strictNullable(),
    status: p.enum([
      'RUNNING',
      'SUCCEEDED',
      'HANDLER_ERROR',
      'TIMEOUT',
      'OOM',
      'OUTPUT_LIMIT',
      'PROCESS_LIMIT',
      'SANDBOX_ERROR',
    ] as const),
    // What the handler returned, stored as is: a top-level string, number or array round-trips
    // exactly (test/execution.test.ts). SQL NULL is JS null: no result yet, or a handler that
    // returned null; the status tells which.
    // json, not jsonb: a handler may return or throw the character U+0000 (migration 0004).
    result: p.json<JsonValue>().columnType('json').strictNullable(),
    error: p.json<ExecutionErrorRecord>().columnType('json').strictNullable(),
    logs: p.json<ExecutionLogRecord[]>(),
    outputTruncated: p.boolean(),
    exitCode: p.integer().strictNullable(),
    durationMs: p.integer().strictNullable(),
    limits: p.json<ExecutionLimitsRecord>(),
    warm: p.boolean().default(false),
    // Null when a warm sandbox ran it.
    coldStartReason: p
      .enum(['NO_POOL', 'LIMITS', 'EVICTED', 'POOL_EMPTY'] as const)
      .strictNullable(),
    /** The service instance that ran it. */
    instanceId: p.text(),
    /** The W3C trace id of the call that ran it; null when it was not traced. */
    traceId: p.text().strictNullable(),
    createdAt: p.datetime(),
    finishedAt: p.datetime().strictNullable(),
  },
  indexes: [
    {
      // An environment's executions newest first, with a (created_at, id) keyset cursor.
      name: 'execution_environment_id_created_at_id_idx',
      columns: [
        { name: 'environment_id' },
        { name: 'created_at', sort: 'desc' },
        // Not `id desc`: MikroORM 7.2's introspection finds "id" inside "environment_id" and
        // reports phantom drift. Ties on created_at are rare; Postgres sorts them incrementally.
        { name: 'id' },
      ],
    },
    {
      // A session's executions newest first, with the same keyset cursor.
      name: 'execution_session_id_created_at_id_idx',
      columns: [{ name: 'session_id' }, { name: 'created_at', sort: 'desc' }, { name: 'id' }],
    },
  ],
});

/** One execution row; create with `em.create(ExecutionEntity, {...})`. */
export class ExecutionEntity extends ExecutionEntitySchema.class {}
ExecutionEntitySchema.setClass(ExecutionEntity);

export type ExecutionRow = ExecutionEntity;

import type { MigrationObject } from '@mikro-orm/core';
import { CreateExecutions } from './0001-create-executions.js';
import { ProcessLimitStatus } from './0002-process-limit-status.js';
import { CreateExecutionOutbox } from './0003-create-outbox.js';
import { ResultErrorJson } from './0004-result-error-json.js';
import { ExecutionTenant } from './0005-tenant.js';
import { ExecutionIdempotencyKey } from './0006-idempotency-key.js';
import { ColdStartReason } from './0007-cold-start-reason.js';
import { Sessions } from './0008-sessions.js';
import { ExecutionTraceContext } from './0009-trace-context.js';

/** In order. A name, once released, never changes: it is what the migration table records. */
export const executionMigrations: MigrationObject[] = [
  { name: '0001-create-executions', class: CreateExecutions },
  { name: '0002-process-limit-status', class: ProcessLimitStatus },
  { name: '0003-create-outbox', class: CreateExecutionOutbox },
  { name: '0004-result-error-json', class: ResultErrorJson },
  { name: '0005-tenant', class: ExecutionTenant },
  { name: '0006-idempotency-key', class: ExecutionIdempotencyKey },
  { name: '0007-cold-start-reason', class: ColdStartReason },
  { name: '0008-sessions', class: Sessions },
  { name: '0009-trace-context', class: ExecutionTraceContext },
];

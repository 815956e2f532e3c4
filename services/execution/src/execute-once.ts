import type { DescMessage } from '@bufbuild/protobuf';
import {
  type ExecuteRequest,
  type ExecuteStreamRequest,
  type Execution,
  ExecutionSchema,
} from '@assist-tee/proto';
import type { ExecutionDeps } from './deps.js';
import { execute } from './execute.js';
import type { LogLine } from './runner-protocol.js';

/**
 * An execution under its request_id. Execute and ExecuteStream share the key (their requests
 * have the same fields), so either may retry the other: the stored answer is the execution.
 * `ran` is false when it is the first call's execution, whose logs a stream then replays.
 */
export async function executeOnce(
  deps: ExecutionDeps,
  caller: string | undefined,
  request: ExecuteRequest | ExecuteStreamRequest,
  call: { schema: DescMessage; signal: AbortSignal },
  onLog?: (line: LogLine) => void,
): Promise<{ execution: Execution; ran: boolean }> {
  const { answer, ran } = await deps.idempotency.run(
    {
      rpc: 'Execute',
      tenantId: caller,
      requestId: request.requestId,
      request: { schema: call.schema, message: request },
      stored: ExecutionSchema,
      signal: call.signal,
    },
    () => execute(deps, caller, request, onLog),
  );
  return { execution: answer, ran };
}

import { create } from '@bufbuild/protobuf';
import { EnvironmentEntity, type EnvironmentRow } from '@assist-tee/db';
import {
  type GetEnvironmentRequest,
  type GetEnvironmentResponse,
  GetEnvironmentResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant, isUuid, notFound } from '@assist-tee/server';
import type { EnvironmentsDeps } from '../deps.js';
import { toEnvironmentMessage } from '../environment-message.js';

/**
 * The row with this id, deleted ones included; NotFound when there is none, or when it is
 * another tenant's (`tenantId` undefined: the services' key, which sees every tenant).
 */
export async function findEnvironment(
  em: ReturnType<EnvironmentsDeps['db']['em']>,
  id: string,
  tenantId: string | undefined,
): Promise<EnvironmentRow> {
  const row = isUuid(id)
    ? await em.findOne(EnvironmentEntity, { id, ...(tenantId === undefined ? {} : { tenantId }) })
    : null;
  if (row === null) throw notFound('environment', id);
  return row;
}

export function getEnvironment(deps: EnvironmentsDeps) {
  return async (
    request: GetEnvironmentRequest,
    context: HandlerContext,
  ): Promise<GetEnvironmentResponse> => {
    const row = await findEnvironment(deps.db.em(), request.id, callerTenant(context));
    return create(GetEnvironmentResponseSchema, { environment: toEnvironmentMessage(row) });
  };
}

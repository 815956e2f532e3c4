import { create } from '@bufbuild/protobuf';
import { EnvironmentEntity, type EnvironmentRow } from '@assist-tee/db';
import {
  type GetEnvironmentRequest,
  type GetEnvironmentResponse,
  GetEnvironmentResponseSchema,
} from '@assist-tee/proto';
import { isUuid, notFound } from '@assist-tee/server';
import type { EnvironmentsDeps } from '../deps.js';
import { toEnvironmentMessage } from '../environment-message.js';

/** The row with this id, deleted ones included; NotFound when there is none. */
export async function findEnvironment(
  em: ReturnType<EnvironmentsDeps['db']['em']>,
  id: string,
): Promise<EnvironmentRow> {
  const row = isUuid(id) ? await em.findOne(EnvironmentEntity, { id }) : null;
  if (row === null) throw notFound('environment', id);
  return row;
}

export function getEnvironment(deps: EnvironmentsDeps) {
  return async (request: GetEnvironmentRequest): Promise<GetEnvironmentResponse> => {
    const row = await findEnvironment(deps.db.em(), request.id);
    return create(GetEnvironmentResponseSchema, { environment: toEnvironmentMessage(row) });
  };
}

import { Code, type Client, ConnectError } from '@connectrpc/connect';
import { EnvironmentStatus, type EnvironmentService } from '@assist-tee/proto';

/**
 * Whether the environment is deleted (or unknown). DeleteEnvironment marks it DELETED before
 * it removes its sandboxes, so a sandbox that died unexplained can be told apart from a crash.
 */
export async function isEnvironmentDeleted(
  environments: Client<typeof EnvironmentService>,
  id: string,
): Promise<boolean> {
  try {
    const { environment } = await environments.getEnvironment({ id });
    return environment?.status === EnvironmentStatus.DELETED;
  } catch (error) {
    return ConnectError.from(error).code === Code.NotFound;
  }
}

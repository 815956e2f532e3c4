import { runMain } from '@assist-tee/server';
import { createExecutionService } from './index.js';

await runMain('execution', async (infrastructure) => [
  await createExecutionService(infrastructure),
]);

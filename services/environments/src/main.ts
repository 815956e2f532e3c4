import { runMain } from '@assist-tee/server';
import { createEnvironmentsService } from './index.js';

await runMain('environments', async (infrastructure) => [
  await createEnvironmentsService(infrastructure),
]);

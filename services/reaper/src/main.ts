import { runMain } from '@assist-tee/server';
import { createReaperService } from './index.js';

await runMain('reaper', async (infrastructure) => [await createReaperService(infrastructure)]);

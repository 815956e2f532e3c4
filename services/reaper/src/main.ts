import { runMain } from '@assist-tee/server';
import { createReaperService } from './index.js';

await runMain('reaper', (infrastructure) => Promise.resolve([createReaperService(infrastructure)]));

import { runMain } from '@assist-tee/server';
import { createAllServices } from './index.js';

await runMain('assist-tee', createAllServices);

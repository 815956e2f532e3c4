// Builds the Bun runtime image (`npm run image`) and prints its tag.
import { runBuildImageCommand } from '@assist-tee/runtime-core';
import { bunImage } from './runtime.js';

await runBuildImageCommand(bunImage);

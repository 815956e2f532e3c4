// Builds the Deno runtime image (`npm run image`) and prints its tag.
import { runBuildImageCommand } from '@assist-tee/runtime-core';
import { denoImage } from './runtime.js';

await runBuildImageCommand(denoImage);

export {
  DENO_BINARY_PATH,
  DENO_CODE_DIR,
  DENO_RUNNER_PATH,
  denoRuntime,
  type RuntimeImage,
} from './runtime.js';
export { assembleDenoContext, buildDenoImage } from './image.js';

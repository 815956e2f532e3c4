export { DENO_BINARY_PATH, denoBinaryPackage, denoImage, denoRuntime } from './runtime.js';
export { buildDenoImage } from './image.js';

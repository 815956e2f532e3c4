export { BUN_BINARY_PATH, bunBinaryPackage, bunImage, bunRuntime } from './runtime.js';
export { buildBunImage } from './image.js';

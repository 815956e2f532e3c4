export * from './example.js';
export * from './postgres.js';
export * from './runtimes.js';
export * from './stack.js';
export * from './processes.js';
export * from './settled.js';
export * from './rejection.js';

export * from './example.js';
export * from './postgres.js';
export * from './stack.js';

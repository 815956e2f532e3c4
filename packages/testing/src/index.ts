export * from './names.js';
export * from './postgres.js';
export * from './nats.js';
export * from './docker.js';
export * from './nats-server.js';
export * from './postgres-server.js';
export * from './private-server.js';

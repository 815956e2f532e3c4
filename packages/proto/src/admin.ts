// The operator API (proto/assist_tee/admin/v1): calls that only the services' key may make.
// Exported from the package as the namespace `admin`, apart from the tenant-facing v1 contracts.
export * from './gen/assist_tee/admin/v1/reaper_pb.js';
export * from './gen/assist_tee/admin/v1/warm_pool_pb.js';
export * from './gen/assist_tee/admin/v1/session_sandboxes_pb.js';

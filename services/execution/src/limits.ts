import type { Config, ExecutionLimits } from '@assist-tee/config';
import type { Limits } from '@assist-tee/proto';
import { invalidArgument } from '@assist-tee/server';

const FIELDS: [keyof ExecutionLimits, string][] = [
  ['timeoutMs', 'limits.timeout_ms'],
  ['memoryMb', 'limits.memory_mb'],
  ['maxOutputBytes', 'limits.max_output_bytes'],
  ['cpuMillicores', 'limits.cpu_millicores'],
];

/** The requested limits with zeros replaced by defaults; InvalidArgument above a maximum. */
export function resolveLimits(
  requested: Limits | undefined,
  config: Config['execution'],
): ExecutionLimits {
  const limits = { ...config.defaults };
  for (const [key, field] of FIELDS) {
    const value = Number(requested?.[key] ?? 0);
    if (value === 0) continue;
    if (value > config.maxima[key]) {
      throw invalidArgument(field, `${value} is above the maximum of ${config.maxima[key]}`);
    }
    limits[key] = value;
  }
  if (limits.memoryMb < 64) throw invalidArgument('limits.memory_mb', 'must be at least 64');
  if (limits.cpuMillicores < 10)
    throw invalidArgument('limits.cpu_millicores', 'must be at least 10');
  return limits;
}

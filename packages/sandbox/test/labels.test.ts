import { describe, expect, test } from 'vitest';
import {
  environmentVolumeName,
  fromDockerLabels,
  labelFilter,
  LABEL_PREFIX,
  toDockerLabels,
} from '../src/index.js';

describe('labels', () => {
  test('toDockerLabels marks the resource as managed and leaves out absent ids', () => {
    expect(LABEL_PREFIX).toBe('dev.assist-tee');
    expect(toDockerLabels({ owner: 'execution', instanceId: 'i-1', executionId: 'x-1' })).toEqual({
      'dev.assist-tee.managed': 'true',
      'dev.assist-tee.owner': 'execution',
      'dev.assist-tee.instance-id': 'i-1',
      'dev.assist-tee.execution-id': 'x-1',
    });
  });

  test('labelFilter narrows the managed filter by the given labels', () => {
    expect(labelFilter({})).toEqual(['dev.assist-tee.managed=true']);
    expect(labelFilter({ environmentId: 'e-1', instanceId: 'i-1' })).toEqual([
      'dev.assist-tee.managed=true',
      'dev.assist-tee.instance-id=i-1',
      'dev.assist-tee.environment-id=e-1',
    ]);
  });

  test('fromDockerLabels reads them back', () => {
    const labels = { owner: 'environments', instanceId: 'i-2', environmentId: 'e-2' };
    expect(fromDockerLabels(toDockerLabels(labels))).toEqual(labels);
  });

  test('environment volumes are named after the environment', () => {
    expect(environmentVolumeName('abc')).toBe('tee-env-abc');
  });
});

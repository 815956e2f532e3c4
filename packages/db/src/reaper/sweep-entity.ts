import { defineEntity, p } from '@mikro-orm/core';

export interface SweepReportRecord {
  expiredEnvironments: number;
  removedContainers: number;
  removedVolumes: number;
  /** Absent in sweeps recorded before it was counted. */
  removedRunscSandboxes?: number;
  /** Sessions ended as LOST; absent in sweeps recorded before sessions. */
  lostSessions?: number;
  errors: string[];
}

/** One reaper sweep, by whichever replica ran it. Must match migrations/ exactly. */
export const SweepSchema = defineEntity({
  name: 'SweepEntity',
  schema: 'reaper',
  tableName: 'sweep',
  properties: {
    id: p.uuid().primary(),
    instanceId: p.text(),
    startedAt: p.datetime(),
    finishedAt: p.datetime(),
    report: p.json<SweepReportRecord>(),
  },
  indexes: [{ name: 'sweep_started_at_idx', properties: ['startedAt'] }],
});
export class SweepEntity extends SweepSchema.class {}
SweepSchema.setClass(SweepEntity);

// Live snapshots: a consistent ELF core of a guest (see docs/snapshot.md).
export { snapshotDomain } from './snapshot';
export type { SnapshotOptions, SnapshotResult, SnapshotProgress, RoundStat } from './snapshot';
export { snapshotMain, summary } from './main';

/** The Linux executor: real response actions on a Linux machine (root). See docs/linux-executor.md. */
export { LinuxExecutor, ISOLATION_STATE, type IsolationState } from './linux-executor.js';
export { DEFAULTS, resolveOptions, type LinuxExecutorOptions, type ResolvedOptions } from './options.js';
export { restoreQuarantined, sha1File, type QuarantineRecord, type RestoreResult } from './quarantine.js';
export { RESTRICTION_STATE, type RestrictionState, type RestrictedPath, type RestrictedMount } from './restrict.js';
export { buildIsolationRuleset, type IsolationPlan } from './isolation.js';
export { parseFinding, type Finding } from './antivirus.js';

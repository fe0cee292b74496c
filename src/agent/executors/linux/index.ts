/** The Linux executor: real response actions on a Linux machine (root). See docs/linux-executor.md. */
export { LinuxExecutor, ISOLATION_STATE, type IsolationState } from './linux-executor.js';
export { DEFAULTS, resolveOptions, type LinuxExecutorOptions, type ResolvedOptions } from './options.js';
export { restoreQuarantined, sha1File, type QuarantineRecord, type RestoreResult } from './quarantine.js';
export { RESTRICTION_STATE, type RestrictionState, type RestrictedPath, type RestrictedMount } from './restrict.js';
export { buildIsolationRuleset, type IsolationPlan } from './isolation.js';
export { parseFinding, type Finding } from './antivirus.js';
export { liveResponse, parseArgs, scriptLaunch, LIVE_RESPONSE_DIR, NO_ARGS, type ScriptResult } from './live-response.js';
export { collectInvestigationPackage, MANIFEST, PACKAGES_DIR, PACKAGE_FORMAT, type Manifest } from './investigation/index.js';
export type { ManifestItem, ManifestSection, ItemStatus } from './investigation/collector.js';

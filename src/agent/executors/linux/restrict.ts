import { realpath, stat } from 'node:fs/promises';
import { succeeded, type ExecutionOutcome } from '../../executor.js';
import { CommandError } from './command.js';
import { throwIfAborted, type ActionEnv } from './env.js';
import { readState, removeState, writeState } from './journal.js';
import { mountIdOf, readMountInfo, remountOptions, type MountEntry } from './mounts.js';

/**
 * RestrictCodeExecution: every restrict path (and every mount below it) is remounted noexec.
 * A path that is not a mount point is first bind-mounted onto itself (recursively, so mounts
 * below it stay visible). Everything needed to undo is written to `<stateDir>/restriction.json`
 * before each change, so UnrestrictCodeExecution restores exactly what was there, even after a
 * partial failure or a crash.
 */

export const RESTRICTION_STATE = 'restriction';

export interface RestrictedMount {
  mountPoint: string;
  mountId: number;
  /** Per-mount options before the restriction, as /proc/self/mountinfo listed them. */
  originalOptions: string[];
}

export interface RestrictedPath {
  /** The restrict path with symlinks resolved. */
  path: string;
  /** As configured. */
  configuredPath: string;
  /** True when the executor bind-mounted the path onto itself (undo: unmount it). */
  createdBind: boolean;
  bindMountId: number | null;
  mounts: RestrictedMount[];
}

export interface RestrictionState {
  version: 1;
  actionId: string;
  since: string;
  paths: RestrictedPath[];
}

async function saveState(env: ActionEnv, state: RestrictionState): Promise<void> {
  await writeState(env.options.stateDir, RESTRICTION_STATE, state);
}

function entryById(info: MountEntry[], id: number): MountEntry | undefined {
  return info.find((e) => e.id === id);
}

/** The mounts visible at and below `path` (the topmost at each mount point), `path`'s own first. */
async function visibleMountsUnder(path: string, info: MountEntry[]): Promise<MountEntry[]> {
  const result: MountEntry[] = [];
  const seen = new Set<number>();
  const points = [path, ...[...new Set(info.filter((e) => e.mountPoint.startsWith(`${path}/`)).map((e) => e.mountPoint))].sort()];
  for (const point of points) {
    let id: number;
    try {
      id = await mountIdOf(point);
    } catch {
      continue; // hidden under another mount, or gone
    }
    const entry = entryById(info, id);
    if (entry && entry.mountPoint === point && !seen.has(id)) {
      seen.add(id);
      result.push(entry);
    }
  }
  return result;
}

async function remount(env: ActionEnv, mountPoint: string, options: string[], noexec: boolean): Promise<void> {
  await env.run(env.options.mountPath, ['-o', remountOptions(options, noexec), mountPoint]);
}

export async function restrictCodeExecution(env: ActionEnv): Promise<ExecutionOutcome> {
  const { options, context } = env;
  const signal = context.signal;
  const state: RestrictionState = (await readState<RestrictionState>(options.stateDir, RESTRICTION_STATE)) ?? {
    version: 1,
    actionId: context.action.id,
    since: new Date().toISOString(),
    paths: [],
  };
  const restricted: { path: string; mounts: string[]; createdBind: boolean; alreadyRestricted: boolean }[] = [];
  const skipped: { path: string; reason: string }[] = [];

  for (const configured of options.restrictPaths) {
    throwIfAborted(signal, 'while restricting code execution');
    let path: string;
    try {
      path = await realpath(configured);
      if (!(await stat(path)).isDirectory()) {
        skipped.push({ path: configured, reason: 'not a directory' });
        await env.note('restrict.skipped', { path: configured, reason: 'not a directory' });
        continue;
      }
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (err as Error).message;
      skipped.push({ path: configured, reason });
      await env.note('restrict.skipped', { path: configured, reason });
      continue;
    }

    const existing = state.paths.find((p) => p.path === path);
    if (existing) {
      // Already restricted: make sure the recorded mounts are still noexec (idempotent).
      const info = await readMountInfo();
      for (const m of existing.mounts) {
        const current = entryById(info, m.mountId);
        if (current && current.mountPoint === m.mountPoint && !current.options.includes('noexec')) {
          await remount(env, m.mountPoint, current.options, true);
        }
      }
      restricted.push({ path, mounts: existing.mounts.map((m) => m.mountPoint), createdBind: existing.createdBind, alreadyRestricted: true });
      continue;
    }

    const record: RestrictedPath = { path, configuredPath: configured, createdBind: false, bindMountId: null, mounts: [] };
    let info = await readMountInfo();
    const top = entryById(info, await mountIdOf(path));
    if (!top || top.mountPoint !== path) {
      // Not a mount point: bind it onto itself so its flags can change without touching the
      // filesystem it lives on. Recorded first, so a crash right after still gets undone.
      record.createdBind = true;
      state.paths.push(record);
      await saveState(env, state);
      try {
        await env.run(options.mountPath, ['--rbind', path, path]);
      } catch (err) {
        state.paths.pop();
        await saveState(env, state);
        throw err;
      }
      record.bindMountId = await mountIdOf(path);
      await saveState(env, state);
      await env.note('restrict.bind', { path, mountId: record.bindMountId });
      info = await readMountInfo();
    } else {
      state.paths.push(record);
    }

    for (const mount of await visibleMountsUnder(path, info)) {
      throwIfAborted(signal, 'while restricting code execution');
      record.mounts.push({ mountPoint: mount.mountPoint, mountId: mount.id, originalOptions: mount.options });
      await saveState(env, state);
      await remount(env, mount.mountPoint, mount.options, true);
      await env.note('restrict.noexec', { mountPoint: mount.mountPoint, mountId: mount.id, originalOptions: mount.options.join(',') });
    }
    restricted.push({ path, mounts: record.mounts.map((m) => m.mountPoint), createdBind: record.createdBind, alreadyRestricted: false });
  }
  await saveState(env, state);
  return succeeded({ restricted, skipped });
}

export async function unrestrictCodeExecution(env: ActionEnv): Promise<ExecutionOutcome> {
  const { options } = env;
  const state = await readState<RestrictionState>(options.stateDir, RESTRICTION_STATE);
  if (!state || state.paths.length === 0) {
    await removeState(options.stateDir, RESTRICTION_STATE);
    await env.note('unrestrict.nothing', {});
    return succeeded({ restored: [], note: 'code execution was not restricted' });
  }
  const restored: { path: string; mounts: string[]; unmountedBind: boolean }[] = [];
  const warnings: string[] = [];

  // Undo in reverse order: later paths may sit inside earlier ones.
  while (state.paths.length > 0) {
    // Deliberately not stopped by the signal half-way: leaving a half-restored machine is
    // worse than finishing a few remounts.
    const record = state.paths[state.paths.length - 1]!;
    const info = await readMountInfo();
    const mountsDone: string[] = [];
    for (const m of [...record.mounts].reverse()) {
      const current = entryById(info, m.mountId);
      if (!current || current.mountPoint !== m.mountPoint) {
        warnings.push(`${m.mountPoint}: mount ${m.mountId} is gone; nothing to restore`);
        continue;
      }
      await remount(env, m.mountPoint, m.originalOptions, m.originalOptions.includes('noexec'));
      mountsDone.push(m.mountPoint);
      await env.note('unrestrict.restored', { mountPoint: m.mountPoint, options: m.originalOptions.join(',') });
    }
    let unmountedBind = false;
    if (record.createdBind) {
      let currentId: number | null = null;
      try {
        currentId = await mountIdOf(record.path);
      } catch {
        /* path gone */
      }
      if (record.bindMountId !== null && currentId === record.bindMountId) {
        try {
          await env.run(options.umountPath, ['--recursive', record.path]);
        } catch (err) {
          if (!(err instanceof CommandError) || err.kind !== 'exit') throw err;
          // Busy (a process has its working directory inside): detach it lazily. Exec was
          // already restored on it above, so nothing stays restricted either way.
          await env.run(options.umountPath, ['--recursive', '--lazy', record.path]);
          warnings.push(`${record.path}: bind mount was busy and was detached lazily`);
        }
        unmountedBind = true;
        await env.note('unrestrict.unbind', { path: record.path, mountId: record.bindMountId });
      } else if (record.bindMountId === null) {
        // The agent stopped between recording the bind and mounting it: whether the mount on
        // the path (if any) is ours cannot be known, so it is left alone and said so.
        const entry = currentId === null ? undefined : entryById(info, currentId);
        if (entry && entry.mountPoint === record.path) {
          warnings.push(`${record.path}: a mount is there that may be the executor's unfinished bind; left in place (umount it by hand if so)`);
        }
      } else {
        warnings.push(`${record.path}: the executor's bind mount ${record.bindMountId} is no longer on top; left alone`);
      }
    }
    restored.push({ path: record.path, mounts: mountsDone, unmountedBind });
    state.paths.pop();
    if (state.paths.length > 0) await saveState(env, state);
  }
  await removeState(options.stateDir, RESTRICTION_STATE);
  return succeeded({ restored, ...(warnings.length ? { warnings } : {}) });
}

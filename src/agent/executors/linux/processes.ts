import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Processes as /proc shows them (in the agent's PID namespace): reading /proc/<pid>/stat, and
 * killing a process tree. Used by RunScript (killing a script with everything it started) and
 * by the investigation package (the process list).
 */

export interface ProcStat {
  pid: number;
  /** The executable's name as the kernel keeps it (at most 15 characters). */
  comm: string;
  /** R, S, D, Z, T, t, X, I, ... */
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  /** Controlling terminal (dev_t), 0 if none. */
  ttyNr: number;
  /** Since boot, in clock ticks (USER_HZ). */
  startTicks: number;
  /** Kept as the kernel's text so it compares exactly (a pid reused later starts later). */
  startTime: string;
  threads: number;
  rssPages: number;
}

/** Parses /proc/<pid>/stat; `comm` may hold spaces and parentheses, so fields are read after the last ')'. */
export function parseProcStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const rest = text.slice(close + 2).trim().split(' ');
  if (rest.length < 22) return null;
  const n = (i: number) => Number(rest[i]);
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: rest[0]!,
    ppid: n(1),
    pgid: n(2),
    sid: n(3),
    ttyNr: n(4),
    threads: n(17),
    startTicks: n(19),
    startTime: rest[19]!,
    rssPages: n(21),
  };
}

export async function readProcStat(pid: number): Promise<ProcStat | null> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** Every pid /proc lists now. */
export async function listPids(): Promise<number[]> {
  return (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
}

export async function listProcStats(): Promise<ProcStat[]> {
  const stats: ProcStat[] = [];
  for (const pid of await listPids()) {
    const s = await readProcStat(pid);
    if (s) stats.push(s);
  }
  return stats;
}

const gone = (s: ProcStat) => s.state === 'Z' || s.state === 'X';

/**
 * The processes that belong to the tree `leader` started: those in its process group or its
 * session and, with `descendants`, every process descending from the leader or from one of
 * them (which catches children that moved to a group or session of their own while their
 * parent lives). Never pid 1 or this process.
 */
export function treeMembers(stats: ProcStat[], leader: number, descendants: boolean): number[] {
  const members = new Set<number>();
  for (const s of stats) {
    if (gone(s) || s.pid === 1 || s.pid === process.pid) continue;
    if (s.pid === leader || s.pgid === leader || s.sid === leader) members.add(s.pid);
  }
  if (descendants) {
    const children = new Map<number, number[]>();
    for (const s of stats) {
      if (gone(s)) continue;
      const list = children.get(s.ppid) ?? [];
      list.push(s.pid);
      children.set(s.ppid, list);
    }
    const queue = [leader, ...members];
    const seen = new Set(queue);
    while (queue.length > 0) {
      const pid = queue.pop()!;
      for (const child of children.get(pid) ?? []) {
        if (seen.has(child) || child === 1 || child === process.pid) continue;
        seen.add(child);
        members.add(child);
        queue.push(child);
      }
    }
  }
  return [...members];
}

/**
 * SIGKILLs the tree `leader` started (see treeMembers), in rounds until no member is left (a
 * member may fork while the others are being killed). Members are found by pid, group and
 * session as /proc shows them right before each kill; Linux does not reuse a pid while a
 * process still has it as its group or session id. Returns the pids killed.
 */
export async function killTree(leader: number, descendants: boolean): Promise<number[]> {
  const killed = new Set<number>();
  for (let round = 0; round < 20; round++) {
    const members = treeMembers(await listProcStats(), leader, descendants);
    if (members.length === 0) break;
    for (const pid of members) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.add(pid);
      } catch {
        /* already gone */
      }
    }
    await sleep(10); // killed processes turn into zombies; a forked one shows up in the next round
  }
  return [...killed];
}

/** Timestamps are stored as epoch milliseconds and shown as MDE shows them: ISO 8601 UTC with
 * seven fractional digits (`2025-05-01T10:00:00.1230000Z`). */
export function toWireTime(ms: number): string;
export function toWireTime(ms: number | null): string | null;
export function toWireTime(ms: number | null): string | null {
  if (ms === null) return null;
  const iso = new Date(ms).toISOString(); // 2025-05-01T10:00:00.123Z
  return `${iso.slice(0, -1)}0000Z`;
}

/**
 * ISO 8601 datetimes as $filter accepts them (contract §5), converted to epoch milliseconds:
 *   2019-11-22T00:00:00Z, 2019-11-22T00:00:00.1230000Z, 2019-11-22T00:00:00+02:00,
 *   2019-11-22T00:00Z, 2018-08-01Z, 2018-08-01 (midnight UTC).
 * A time without a zone is taken as UTC. Fractions beyond milliseconds are truncated.
 */

const DATETIME =
  /(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?([Zz]|[+-]\d{2}:\d{2})?/y;

export interface DateTimeMatch {
  /** Index after the matched text. */
  end: number;
  /** Epoch milliseconds, or undefined when a field is out of range (month 13, 30 February...). */
  value: number | undefined;
}

/** Matches a datetime at `pos` (`undefined` unless the text there starts with YYYY-MM-DD). */
export function matchDateTimeAt(text: string, pos: number): DateTimeMatch | undefined {
  DATETIME.lastIndex = pos;
  const m = DATETIME.exec(text);
  if (!m) return undefined;
  const num = (s: string | undefined): number => (s === undefined ? 0 : Number(s));
  const year = num(m[1]);
  const month = num(m[2]);
  const day = num(m[3]);
  const hour = num(m[4]);
  const minute = num(m[5]);
  const second = num(m[6]);
  const millis = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  let offsetMinutes = 0;
  const zone = m[8];
  if (zone !== undefined && zone !== 'Z' && zone !== 'z') {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return { end: DATETIME.lastIndex, value: undefined };
    offsetMinutes = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const valid =
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth(year, month) &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59;
  if (!valid) return { end: DATETIME.lastIndex, value: undefined };
  const days = daysFromCivil(year, month, day);
  const value = ((days * 24 + hour) * 60 + minute - offsetMinutes) * 60_000 + second * 1000 + millis;
  return { end: DATETIME.lastIndex, value };
}

/** The epoch milliseconds of a whole string that is one datetime, else undefined. */
export function parseDateTime(text: string): number | undefined {
  const m = matchDateTimeAt(text, 0);
  return m !== undefined && m.end === text.length ? m.value : undefined;
}

function isLeapYear(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

function daysInMonth(y: number, m: number): number {
  if (m === 2) return isLeapYear(y) ? 29 : 28;
  return m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

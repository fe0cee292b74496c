/**
 * How the client commands print: aligned tables that fit the terminal, key/value details, or the
 * API's own JSON with --json. Data goes to stdout; notes and progress go to stderr.
 */

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  /** May be cut (with an ellipsis) to make the table fit; ids and statuses are never cut. */
  shrink?: boolean;
  /** Left out when the terminal is too narrow for it. */
  optional?: boolean;
}

const GAP = '  ';
/** A column is never cut below this many characters (or its header). */
const MIN_SHRUNK = 8;

/** The terminal's width: $COLUMNS, else the TTY's; no limit when stdout is not a terminal. */
export function outputWidth(): number {
  const fromEnv = Number(process.env.COLUMNS);
  if (Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  return process.stdout.isTTY ? process.stdout.columns || 80 : Infinity;
}

/**
 * Columns padded to line up. When the lines would not fit `width`, the widest cuttable columns
 * shrink; when even that is not enough, optional columns go, rightmost first.
 */
export function table<T>(rows: readonly T[], allColumns: readonly Column<T>[], width = outputWidth()): string {
  const cellsOf = (columns: readonly Column<T>[]) => rows.map((row) => columns.map((c) => oneLine(c.value(row))));
  const widthsOf = (columns: readonly Column<T>[], cells: string[][]) =>
    columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const floorsOf = (columns: readonly Column<T>[], widths: number[]) =>
    columns.map((c, i) => (c.shrink ? Math.min(widths[i]!, Math.max(MIN_SHRUNK, c.header.length)) : widths[i]!));
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0) + GAP.length * (values.length - 1);

  let columns = [...allColumns];
  while (sum(floorsOf(columns, widthsOf(columns, cellsOf(columns)))) > width) {
    const optional = columns.map((c) => c.optional).lastIndexOf(true);
    if (optional === -1) break;
    columns = columns.filter((_, i) => i !== optional);
  }
  const cells = cellsOf(columns);
  const widths = widthsOf(columns, cells);
  const floors = floorsOf(columns, widths);
  while (sum(widths) > width) {
    // Shrink the widest column that still can, one character at a time.
    let widest = -1;
    for (let i = 0; i < columns.length; i++) {
      if (widths[i]! > floors[i]! && (widest === -1 || widths[i]! > widths[widest]!)) widest = i;
    }
    if (widest === -1) break;
    widths[widest]! -= 1;
  }
  const line = (values: string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? cut(v, widths[i]!) : cut(v, widths[i]!).padEnd(widths[i]!)))
      .join(GAP)
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n');
}

/** `label  value` lines, labels aligned. */
export function details(entries: readonly (readonly [string, string])[]): string {
  const width = Math.max(...entries.map(([label]) => label.length));
  return entries.map(([label, value]) => `${label.padEnd(width)}${GAP}${oneLine(value)}`.trimEnd()).join('\n');
}

/** A wire time `2025-05-01T10:00:00.1230000Z` as `2025-05-01 10:00:00Z`; `-` for none. */
export function shortTime(value: string | null): string {
  if (!value) return '-';
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})/.exec(value);
  return m ? `${m[1]} ${m[2]}Z` : value;
}

export const orDash = (value: string | number | boolean | null | undefined): string =>
  value === null || value === undefined || value === '' ? '-' : String(value);

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printText(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** A line on stderr; it may quote anyone's text (a comment, a server's message), so it stays one line. */
export function note(text: string): void {
  process.stderr.write(`${oneLine(text)}\n`);
}

/** Control characters in a value (a comment is anyone's text) would break lines or drive the terminal. */
export function oneLine(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
}

function cut(value: string, width: number): string {
  return value.length <= width ? value : `${value.slice(0, Math.max(0, width - 1))}…`;
}

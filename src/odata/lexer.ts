/**
 * Tokens of a decoded $filter value. Whitespace (spaces and tabs) separates tokens; it is not
 * required where the boundary is unambiguous (`eq'x'`), but a number or datetime must not run
 * into letters or digits (`5and` is an error, not `5 and`).
 */
import { matchDateTimeAt } from './datetime.js';
import { filterSyntaxError, quote } from './errors.js';

export type PunctType = '(' | ')' | ',' | ':' | '/';

export type Token =
  | { type: 'ident'; text: string; pos: number }
  | { type: 'string'; value: string; pos: number }
  | { type: 'number'; value: number; text: string; pos: number }
  | { type: 'datetime'; value: number; text: string; pos: number }
  | { type: PunctType; pos: number }
  | { type: 'eof'; pos: number };

const IDENT = /[A-Za-z_][A-Za-z0-9_]*/y;
const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
/** Characters that may not directly follow a number or datetime literal. */
const LITERAL_TAIL = /[A-Za-z0-9_.:+-]/;
const LITERAL_CHUNK = /[A-Za-z0-9_.:+-]*/y;

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

/** A character as an error message shows it. */
export function describeChar(c: string): string {
  const code = c.codePointAt(0) ?? 0;
  if (code < 0x20 || code === 0x7f || (code >= 0x80 && code < 0xa0)) {
    return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return `'${c}'`;
}

/** The run of literal-ish characters at `pos`, for "invalid literal 'x'" messages. */
function chunkAt(text: string, pos: number): string {
  LITERAL_CHUNK.lastIndex = pos + 1;
  LITERAL_CHUNK.exec(text);
  return text.slice(pos, LITERAL_CHUNK.lastIndex);
}

export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text[i] as string;
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    if (c === '(' || c === ')' || c === ',' || c === ':' || c === '/') {
      tokens.push({ type: c, pos: i });
      i++;
      continue;
    }
    if (c === "'") {
      const start = i;
      let value = '';
      i++;
      for (;;) {
        const close = text.indexOf("'", i);
        if (close < 0) throw filterSyntaxError(start, 'unterminated string literal (a quote inside a string is written as two quotes)');
        value += text.slice(i, close);
        if (text[close + 1] === "'") {
          value += "'";
          i = close + 2;
        } else {
          i = close + 1;
          break;
        }
      }
      tokens.push({ type: 'string', value, pos: start });
      continue;
    }
    if (isDigit(c) || (c === '-' && isDigit(text[i + 1]))) {
      const start = i;
      const dt = c === '-' ? undefined : matchDateTimeAt(text, i);
      if (dt) {
        const next = text[dt.end];
        if (dt.value === undefined || (next !== undefined && LITERAL_TAIL.test(next))) {
          throw filterSyntaxError(start, `invalid datetime literal ${quote(chunkAt(text, start))}`);
        }
        tokens.push({ type: 'datetime', value: dt.value, text: text.slice(start, dt.end), pos: start });
        i = dt.end;
        continue;
      }
      NUMBER.lastIndex = i;
      NUMBER.exec(text);
      const end = NUMBER.lastIndex;
      const next = text[end];
      const numText = text.slice(start, end);
      const value = Number(numText);
      if ((next !== undefined && LITERAL_TAIL.test(next)) || !Number.isFinite(value)) {
        const chunk = chunkAt(text, start);
        const afterDate = tokens[tokens.length - 1]?.type === 'datetime' && text[start - 1] === ' ';
        const hint = afterDate && /^\d{2}:\d{2}$/.test(chunk)
          ? " (a '+' in a query string stands for a space: send the '+' of a UTC offset as %2B)"
          : '';
        throw filterSyntaxError(start, `invalid number literal ${quote(chunk)}${hint}`);
      }
      tokens.push({ type: 'number', value: value === 0 ? 0 : value, text: numText, pos: start });
      i = end;
      continue;
    }
    IDENT.lastIndex = i;
    if (IDENT.exec(text)) {
      tokens.push({ type: 'ident', text: text.slice(i, IDENT.lastIndex), pos: i });
      i = IDENT.lastIndex;
      continue;
    }
    const ch = String.fromCodePoint(text.codePointAt(i) ?? 0);
    throw filterSyntaxError(i, `unexpected character ${describeChar(ch)}`);
  }
  tokens.push({ type: 'eof', pos: n });
  return tokens;
}

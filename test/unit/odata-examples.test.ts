import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import {
  ODataError,
  compileFilter,
  compileOrderBy,
  defineEntitySet,
  parseDateTime,
  parseQueryOptions,
  type EntitySetDef,
  type FilterExpr,
} from '../../src/odata/index.js';
import { SET, TAGS_SQL } from './odata-fixture.js';


/** Parses `$filter=<raw>` where raw is already URL-encoded as a client would send it. */
function rawFilter(raw: string): FilterExpr | undefined {
  return parseQueryOptions(`$filter=${raw}`, SET).filter;
}
/** Parses a plain-text filter (encoded here). */
function filter(text: string): FilterExpr | undefined {
  return rawFilter(encodeURIComponent(text));
}
function sqlOf(text: string): { sql: string; params: unknown[] } {
  const f = filter(text);
  if (!f) throw new Error('no filter');
  return compileFilter(f, SET);
}
/** The ODataError message a parse of `query` throws. */
function errorOf(query: string): string {
  try {
    parseQueryOptions(query, SET);
  } catch (e) {
    expect(e).toBeInstanceOf(ODataError);
    expect((e as Error).name).toBe('ODataError');
    return (e as Error).message;
  }
  throw new Error(`no error for ${query}`);
}
function filterError(text: string): string {
  return errorOf(`$filter=${encodeURIComponent(text)}`);
}

const eq = (property: string, value: string): FilterExpr => ({
  kind: 'compare',
  op: 'eq',
  property,
  value: { kind: 'string', value },
});
const S = (value: string) => ({ kind: 'string' as const, value });

describe('parseQueryOptions: the real client wire form', () => {
  it("parses Kibana's query", () => {
    const q = parseQueryOptions(
      "$count=true&$top=5&$skip=10&$orderby=creationDateTimeUtc+desc&$filter=id+in+('a','b')+AND+status+eq+'Pending'+AND+type+in+('Isolate','Unisolate')",
      SET,
    );
    expect(q).toEqual({
      count: true,
      top: 5,
      skip: 10,
      orderBy: [{ property: 'creationDateTimeUtc', direction: 'desc' }],
      filter: {
        kind: 'and',
        left: {
          kind: 'and',
          left: { kind: 'in', property: 'id', values: [S('a'), S('b')] },
          right: eq('status', 'Pending'),
        },
        right: { kind: 'in', property: 'type', values: [S('Isolate'), S('Unisolate')] },
      },
    });
    expect(compileFilter(q.filter!, SET)).toEqual({
      sql: '(a.id IN (?, ?) AND a.status = ? AND a.type IN (?, ?))',
      params: ['a', 'b', 'Pending', 'Isolate', 'Unisolate'],
    });
    expect(compileOrderBy(q.orderBy, SET)).toBe('a.created_at DESC');
  });

  it('has defaults when nothing is given, and ignores non-$ parameters', () => {
    expect(parseQueryOptions('', SET)).toEqual({ skip: 0, orderBy: [], count: false });
    expect(parseQueryOptions('api-version=1.0&foo=%ZZ&filter=bad&&', SET)).toEqual({ skip: 0, orderBy: [], count: false });
  });

  it('matches option names case-insensitively, also percent-encoded', () => {
    const q = parseQueryOptions("$FILTER=Status+eq+'pending'&$Top=3&%24SKIP=2&$CoUnT=TRUE&$OrderBy=Type", SET);
    expect(q).toEqual({
      filter: eq('status', 'Pending'),
      top: 3,
      skip: 2,
      count: true,
      orderBy: [{ property: 'type', direction: 'asc' }],
    });
  });

  it("treats '+' as a space and %2B as a plus", () => {
    expect(rawFilter("requestor+eq+'a+b'")).toEqual(eq('requestor', 'a b'));
    expect(rawFilter("requestor%20eq%20'a%2Bb'")).toEqual(eq('requestor', 'a+b'));
    expect(rawFilter("requestor+eq+'100%25'")).toEqual(eq('requestor', '100%'));
    expect(rawFilter('creationDateTimeUtc+gt+2019-11-22T00:00:00%2B02:00')).toEqual({
      kind: 'compare',
      op: 'gt',
      property: 'creationDateTimeUtc',
      value: { kind: 'datetime', value: Date.UTC(2019, 10, 21, 22) },
    });
    // An unencoded '+' in an offset is a space, so the literal is broken, as it would be in MDE.
    expect(errorOf('$filter=creationDateTimeUtc+gt+2019-11-22T00:00:00+02:00')).toBe(
      "Syntax error at position 43 in $filter: invalid number literal '02:00' (a '+' in a query string stands for a space: send the '+' of a UTC offset as %2B)",
    );
  });
});

describe('$filter operators', () => {
  it.each([
    ['eq', '='],
    ['gt', '>'],
    ['ge', '>='],
    ['lt', '<'],
    ['le', '<='],
  ])('%s on a number', (op, sqlOp) => {
    expect(filter(`riskScore ${op} -1.5`)).toEqual({
      kind: 'compare',
      op,
      property: 'riskScore',
      value: { kind: 'number', value: -1.5 },
    });
    expect(sqlOf(`riskScore ${op} 7`)).toEqual({ sql: `a.risk_score ${sqlOp} ?`, params: [7] });
  });

  it('ne keeps null rows (OData: null ne x is true)', () => {
    expect(sqlOf("requestor ne 'x'")).toEqual({ sql: '(a.requestor <> ? OR a.requestor IS NULL)', params: ['x'] });
  });

  it('eq null and ne null', () => {
    expect(filter('requestor eq null')).toEqual({ kind: 'compare', op: 'eq', property: 'requestor', value: { kind: 'null' } });
    expect(sqlOf('requestor eq null')).toEqual({ sql: 'a.requestor IS NULL', params: [] });
    expect(sqlOf('status ne NULL')).toEqual({ sql: 'a.status IS NOT NULL', params: [] });
    expect(sqlOf('creationDateTimeUtc eq null')).toEqual({ sql: 'a.created_at IS NULL', params: [] });
    expect(filterError('riskScore gt null')).toBe("null can only be compared with eq or ne (property 'riskScore') in $filter");
  });

  it('ordering operators on strings and datetimes', () => {
    expect(sqlOf("requestor ge 'm'")).toEqual({ sql: 'a.requestor >= ?', params: ['m'] });
    expect(sqlOf('creationDateTimeUtc lt 2020-01-01')).toEqual({ sql: 'a.created_at < ?', params: [Date.UTC(2020, 0, 1)] });
  });

  it('literal op property is flipped', () => {
    expect(filter('5 lt riskScore')).toEqual({ kind: 'compare', op: 'gt', property: 'riskScore', value: { kind: 'number', value: 5 } });
    expect(filter("'Pending' eq status")).toEqual(eq('status', 'Pending'));
    expect(filter('2020-01-01 ge creationDateTimeUtc')).toMatchObject({ op: 'le', property: 'creationDateTimeUtc' });
  });

  it('in, including null', () => {
    expect(sqlOf("status in ('Pending', 'failed')")).toEqual({ sql: 'a.status IN (?, ?)', params: ['Pending', 'Failed'] });
    expect(sqlOf("requestor in ('a', null)")).toEqual({
      sql: '(a.requestor IS NULL OR a.requestor IN (?))',
      params: ['a'],
    });
    expect(sqlOf('riskScore in (null)')).toEqual({ sql: 'a.risk_score IS NULL', params: [] });
    expect(sqlOf('creationDateTimeUtc in (2018-08-01Z)')).toEqual({ sql: 'a.created_at IN (?)', params: [Date.UTC(2018, 7, 1)] });
    expect(filterError('status in ()')).toBe("Syntax error at position 11 in $filter: expected a literal in the 'in' list, found ')'");
  });

  it('startswith, case-insensitive, with LIKE wildcards escaped', () => {
    expect(filter("startswith(requestor,'Ab')")).toEqual({ kind: 'startswith', property: 'requestor', prefix: 'Ab' });
    expect(filter("STARTSWITH( Requestor , 'Ab' ) eq true")).toEqual({ kind: 'startswith', property: 'requestor', prefix: 'Ab' });
    expect(filter("startswith(requestor,'Ab') eq false")).toEqual({
      kind: 'not',
      operand: { kind: 'startswith', property: 'requestor', prefix: 'Ab' },
    });
    expect(sqlOf("startswith(requestor, 'A_b%c\\d')")).toEqual({
      sql: "lower(a.requestor) LIKE ? ESCAPE '\\'",
      params: ['a\\_b\\%c\\\\d%'],
    });
    expect(filter("startswith(id,'ABC')")).toEqual({ kind: 'startswith', property: 'id', prefix: 'abc' });
    expect(filterError("startswith(status,'P')")).toBe(
      "startswith is not supported on property 'status' (enum) in $filter; it needs a string property",
    );
    expect(filterError("startswith(requestor,'a') ne true")).toMatch(/can only be followed by 'eq true' or 'eq false'/);
    expect(filterError("contains(requestor,'a')")).toBe(
      "Unsupported function 'contains' in $filter; the only function supported is startswith",
    );
  });

  it('tags: any() with any variable name, and the bare form', () => {
    const any = (variable: string, value: string): FilterExpr => ({
      kind: 'any',
      property: 'machineTags',
      variable,
      value: S(value),
    });
    expect(filter("machineTags/any(t: t eq 'prod')")).toEqual(any('t', 'prod'));
    expect(filter("MachineTags/ANY(tag:'prod' EQ tag)")).toEqual(any('tag', 'prod'));
    expect(filter("machineTags eq 'prod'")).toEqual(any('t', 'prod'));
    expect(sqlOf("machineTags/any(x: x eq 'it''s')")).toEqual({ sql: `(${TAGS_SQL})`, params: ["it's"] });
    expect(filterError("machineTags/any(t: u eq 'x')")).toMatch(/expected the lambda variable 't'/);
    expect(filterError("machineTags ne 'x'")).toMatch(/only supports machineTags eq/);
    expect(filterError("machineTags in ('x')")).toMatch(/does not support 'in'/);
    expect(filterError("machineTags/all(t: t eq 'x')")).toMatch(/'all' is not supported/);
    expect(filterError("status/any(t: t eq 'x')")).toMatch(/'status' is not a collection/);
  });

  it('not', () => {
    expect(filter("not status eq 'Failed'")).toEqual({ kind: 'not', operand: eq('status', 'Failed') });
    expect(filter("NOT (status eq 'Failed')")).toEqual({ kind: 'not', operand: eq('status', 'Failed') });
    // Under NOT, comparisons stay two-valued: rows with a null status match `not (status eq 'x')`.
    expect(sqlOf("not (status eq 'Failed')")).toEqual({
      sql: 'NOT ((a.status IS NOT NULL AND a.status = ?))',
      params: ['Failed'],
    });
  });
});

describe('$filter keywords, names and literals', () => {
  it('is case-insensitive for keywords and property names', () => {
    expect(filter("STATUS Eq 'pending' AnD Not RISKSCORE gT 5 oR Type IN ('isolate')")).toEqual({
      kind: 'or',
      left: {
        kind: 'and',
        left: eq('status', 'Pending'),
        right: { kind: 'not', operand: { kind: 'compare', op: 'gt', property: 'riskScore', value: { kind: 'number', value: 5 } } },
      },
      right: { kind: 'in', property: 'type', values: [S('Isolate')] },
    });
  });

  it('accepts tabs and runs of spaces', () => {
    expect(filter("\t status  \teq   'Failed'  ")).toEqual(eq('status', 'Failed'));
  });

  it("unescapes '' in strings", () => {
    expect(filter("requestor eq 'O''Brien'")).toEqual(eq('requestor', "O'Brien"));
    expect(filter("requestor eq ''''")).toEqual(eq('requestor', "'"));
    expect(filter("requestor eq ''")).toEqual(eq('requestor', ''));
    expect(filter("requestor eq 'a''''b'")).toEqual(eq('requestor', "a''b"));
  });

  it('lower-cases guid literals, whatever their shape', () => {
    expect(filter("id eq 'ABC-Def'")).toEqual(eq('id', 'abc-def'));
    expect(filter("id in ('A','b')")).toEqual({ kind: 'in', property: 'id', values: [S('a'), S('b')] });
  });

  it('normalises enum literals and names the allowed values otherwise', () => {
    expect(filter("type eq 'stopandquarantinefile'")).toEqual(eq('type', 'StopAndQuarantineFile'));
    expect(filterError("status eq 'Canceled'")).toBe(
      "Invalid value 'Canceled' for property 'status' in $filter: expected one of Pending, InProgress, Succeeded, Failed, TimeOut, Cancelled",
    );
  });

  it.each([
    ['2019-11-22T00:00:00Z', Date.UTC(2019, 10, 22)],
    ['2019-11-22T00:00:00.123Z', Date.UTC(2019, 10, 22, 0, 0, 0, 123)],
    ['2019-11-22T10:20:30.1234567Z', Date.UTC(2019, 10, 22, 10, 20, 30, 123)],
    ['2019-11-22T00:00:00+02:00', Date.UTC(2019, 10, 21, 22)],
    ['2019-11-22T00:00:00-05:30', Date.UTC(2019, 10, 22, 5, 30)],
    ['2019-11-22T08:15Z', Date.UTC(2019, 10, 22, 8, 15)],
    ['2019-11-22T08:15:00', Date.UTC(2019, 10, 22, 8, 15)],
    ['2018-08-01Z', Date.UTC(2018, 7, 1)],
    ['2018-08-01', Date.UTC(2018, 7, 1)],
    ['2020-02-29', Date.UTC(2020, 1, 29)],
    ['0001-01-01', new Date(Date.UTC(2000, 0, 1)).setUTCFullYear(1)],
    ['0000-03-01T12:00Z', new Date(Date.UTC(2000, 2, 1, 12)).setUTCFullYear(0)],
  ])('datetime %s', (text, ms) => {
    expect(filter(`creationDateTimeUtc ge ${text}`)).toEqual({
      kind: 'compare',
      op: 'ge',
      property: 'creationDateTimeUtc',
      value: { kind: 'datetime', value: ms },
    });
    // Quoted, it is accepted too when compared with a datetime property.
    expect(filter(`creationDateTimeUtc ge '${text}'`)).toEqual(filter(`creationDateTimeUtc ge ${text}`));
  });

  it('rejects impossible datetimes', () => {
    expect(filterError('creationDateTimeUtc gt 2019-02-29')).toBe(
      "Syntax error at position 23 in $filter: invalid datetime literal '2019-02-29'",
    );
    expect(filterError('creationDateTimeUtc gt 2019-11-22T24:00:00Z')).toMatch(/invalid datetime literal/);
    expect(filterError('creationDateTimeUtc gt 2019-11-22T00:00:00.Z')).toMatch(/invalid datetime literal/);
    expect(filterError("creationDateTimeUtc gt 'yesterday'")).toBe(
      "Invalid value 'yesterday' for property 'creationDateTimeUtc' in $filter: expected a datetime such as 2019-11-22T00:00:00Z",
    );
    expect(parseDateTime('2019-11-22T00:00:00Z ')).toBeUndefined();
  });

  it('numbers: integers, decimals, negatives, exponents', () => {
    for (const [text, value] of [
      ['0', 0],
      ['-0', 0],
      ['42', 42],
      ['-3.25', -3.25],
      ['1e3', 1000],
      ['2.5E-1', 0.25],
    ] as const) {
      expect(filter(`riskScore eq ${text}`)).toMatchObject({ value: { kind: 'number', value } });
    }
    expect(filterError('riskScore eq 5and')).toBe("Syntax error at position 13 in $filter: invalid number literal '5and'");
    expect(filterError('riskScore eq 1e999')).toMatch(/invalid number literal '1e999'/);
  });
});

describe('$filter precedence and nesting', () => {
  const a = "status eq 'Pending'";
  const b = "type eq 'Isolate'";
  const c = "requestor eq 'x'";
  const A = eq('status', 'Pending');
  const B = eq('type', 'Isolate');
  const C = eq('requestor', 'x');

  it('and binds tighter than or', () => {
    expect(filter(`${a} or ${b} and ${c}`)).toEqual({ kind: 'or', left: A, right: { kind: 'and', left: B, right: C } });
    expect(filter(`${a} and ${b} or ${c}`)).toEqual({ kind: 'or', left: { kind: 'and', left: A, right: B }, right: C });
  });

  it('parentheses override precedence, chains are left-associative', () => {
    expect(filter(`(${a} or ${b}) and ${c}`)).toEqual({ kind: 'and', left: { kind: 'or', left: A, right: B }, right: C });
    expect(filter(`${a} or ${b} or ${c}`)).toEqual({ kind: 'or', left: { kind: 'or', left: A, right: B }, right: C });
    expect(filter(`${a} and (${b} and ${c})`)).toEqual({ kind: 'and', left: A, right: { kind: 'and', left: B, right: C } });
    expect(filter(`((((${a}))))`)).toEqual(A);
  });

  it('not binds tighter than and', () => {
    expect(filter(`not ${a} and ${b}`)).toEqual({ kind: 'and', left: { kind: 'not', operand: A }, right: B });
    expect(filter(`not not ${a}`)).toEqual({ kind: 'not', operand: { kind: 'not', operand: A } });
  });

  it('compiles nested expressions with every group parenthesised', () => {
    expect(sqlOf(`(${a} or ${b}) and not (${c} or riskScore ne 1)`)).toEqual({
      sql:
        '((a.status = ? OR a.type = ?) AND NOT (((a.requestor IS NOT NULL AND a.requestor = ?) OR (a.risk_score <> ? OR a.risk_score IS NULL))))',
      params: ['Pending', 'Isolate', 'x', 1],
    });
  });

  it('allows 32 levels of nesting and rejects 33', () => {
    expect(filter(`${'('.repeat(32)}${a}${')'.repeat(32)}`)).toEqual(A);
    expect(filter(`${'not '.repeat(16)}${'('.repeat(16)}${a}${')'.repeat(16)}`)).toBeDefined();
    expect(filterError(`${'('.repeat(33)}${a}${')'.repeat(33)}`)).toBe(
      "$filter is nested too deeply at position 32 (at most 32 levels of parentheses and 'not')",
    );
    expect(filterError(`${'not '.repeat(33)}${a}`)).toMatch(/nested too deeply/);
  });

  it('the deepest accepted filters compile to SQL that SQLite accepts', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (risk_score REAL, rid INTEGER); CREATE TABLE action_tags (rid INTEGER, tag TEXT)');
    let parens = 'riskScore eq 1';
    for (let i = 0; i < 32; i++) parens = `riskScore eq ${i} ${i % 2 ? 'or' : 'and'} (${parens})`;
    let nots = "machineTags eq 'x'";
    for (let i = 0; i < 16; i++) nots = `riskScore eq ${i} ${i % 2 ? 'or' : 'and'} not (${nots})`;
    for (const text of [parens, nots]) {
      const { sql, params } = sqlOf(text);
      expect(() => db.prepare(`SELECT * FROM t a WHERE ${sql}`).all(...params)).not.toThrow();
    }
    db.close();
  });

  it('bounds the input: length and in-list size, never a stack overflow', () => {
    expect(filterError('('.repeat(100_000))).toBe('$filter is longer than 4096 characters');
    expect(filterError('('.repeat(4096))).toMatch(/nested too deeply/);
    expect(filterError(`requestor eq '${'x'.repeat(4100)}'`)).toBe('$filter is longer than 4096 characters');
    const values = (n: number) => Array.from({ length: n }, () => "''").join(',');
    expect(filter(`requestor in (${values(300)}) or machineId in (${values(200)})`)).toBeDefined();
    expect(filterError(`requestor in (${values(300)}) or machineId in (${values(201)})`)).toBe(
      "$filter has more than 500 values in 'in' lists",
    );
    // A long flat chain is fine (no recursion per link).
    const chain = Array.from({ length: 200 }, () => 'riskScore eq 1').join(' or ');
    expect(compileFilter(filter(chain)!, SET).params).toHaveLength(200);
  });
});

describe('$filter errors', () => {
  it.each([
    ["foo eq 'x'", "Unknown property 'foo' in $filter"],
    ["(status eq 'Pending'", "Syntax error at position 20 in $filter: expected ')', found the end of the filter"],
    ["status eq 'Pending')", "Syntax error at position 19 in $filter: unbalanced ')'"],
    ["status eq 'Pending' foo", "Syntax error at position 20 in $filter: expected 'and', 'or' or the end of the filter, found 'foo'"],
    ["status 'Pending'", "Syntax error at position 7 in $filter: expected an operator (eq, ne, gt, ge, lt, le or in), found the string 'Pending'"],
    ['status eq', 'Syntax error at position 9 in $filter: expected a property name or a literal, found the end of the filter'],
    ["requestor eq 'abc", 'Syntax error at position 13 in $filter: unterminated string literal (a quote inside a string is written as two quotes)'],
    ["requestor eq \"abc\"", `Syntax error at position 13 in $filter: unexpected character '"'`],
    ["requestor eq 'a'\nand", 'Syntax error at position 16 in $filter: unexpected character U+000A'],
    ["status eq 'Pending' and", 'Syntax error at position 23 in $filter: expected a property name or a literal, found the end of the filter'],
    ["and status eq 'Pending'", "Syntax error at position 0 in $filter: expected a property name or a literal, found the keyword 'and'"],
    ["status eq type", "Cannot compare property 'status' with property 'type' in $filter; one side must be a literal"],
    ["'a' eq 'b'", 'Syntax error at position 0 in $filter: a comparison needs a property on one side, found two literals'],
    ["status gt 'Pending'", "Operator 'gt' is not supported on property 'status' (enum) in $filter; use eq, ne or in"],
    ["id lt 'a'", "Operator 'lt' is not supported on property 'id' (guid) in $filter; use eq, ne or in"],
    ["riskScore eq '5'", "Invalid value '5' for property 'riskScore' in $filter: expected a number"],
    ['requestor eq 5', "Invalid value 5 for property 'requestor' in $filter: expected a string in single quotes"],
    ['creationDateTimeUtc gt 5', "Invalid value 5 for property 'creationDateTimeUtc' in $filter: expected a datetime such as 2019-11-22T00:00:00Z"],
    ['requestor eq true', "Property 'requestor' cannot be compared with the boolean true in $filter"],
    ["requestor eq 'a\u0000'", 'String literals must not contain the character U+0000 in $filter'],
    ['', '$filter is empty'],
    ['   ', '$filter is empty'],
  ])('%j', (text, message) => {
    expect(filterError(text)).toBe(message);
  });

  it('reports malformed percent-encoding', () => {
    expect(errorOf("$filter=requestor+eq+'%E0%A4%A'")).toBe('Malformed percent-encoding in the value of $filter');
    expect(errorOf('$fil%ZZter=1')).toBe("Malformed percent-encoding in the query option name '$fil%ZZter'");
  });

  it('quotes long or odd input briefly', () => {
    const message = filterError(`${'x'.repeat(500)} eq 1`);
    expect(message).toBe(`Unknown property '${'x'.repeat(64)}...' in $filter`);
  });
});

describe('other system options', () => {
  it.each([
    ['$top=0', { top: 0 }],
    ['$top=10000', { top: 10000 }],
    ['$top=007', { top: 7 }],
    ['$skip=0', { skip: 0 }],
    ['$skip=9007199254740991', { skip: Number.MAX_SAFE_INTEGER }],
    ['$count=false', { count: false }],
    ['$count=True', { count: true }],
  ])('%s', (query, expected) => {
    expect(parseQueryOptions(query, SET)).toMatchObject(expected);
  });

  it.each([
    ['$top=10001', '$top must be an integer between 0 and 10000'],
    ['$top=-1', '$top must be an integer between 0 and 10000'],
    ['$top=1.5', '$top must be an integer between 0 and 10000'],
    ['$top=', '$top must be an integer between 0 and 10000'],
    ['$top=+5', '$top must be an integer between 0 and 10000'],
    ['$top=1e3', '$top must be an integer between 0 and 10000'],
    ['$skip=9007199254740992', '$skip must be an integer between 0 and 9007199254740991'],
    ['$skip=abc', '$skip must be an integer between 0 and 9007199254740991'],
    ['$count=yes', '$count must be true or false'],
    ['$count', '$count must be true or false'],
    ['$select=id', "Unsupported query option '$select'; the supported options are $filter, $top, $skip, $orderby and $count"],
    ['$expand=x', "Unsupported query option '$expand'; the supported options are $filter, $top, $skip, $orderby and $count"],
    ['$Search=x', "Unsupported query option '$Search'; the supported options are $filter, $top, $skip, $orderby and $count"],
    ['$top=1&$TOP=2', 'Query option $top is given more than once'],
    ["$filter=status+eq+'Pending'&$filter=riskScore+eq+1", 'Query option $filter is given more than once'],
  ])('%s', (query, message) => {
    expect(errorOf(query)).toBe(message);
  });

  it('$orderby', () => {
    expect(parseQueryOptions('$orderby=creationDateTimeUtc+DESC,+TYPE,status%09asc', SET).orderBy).toEqual([
      { property: 'creationDateTimeUtc', direction: 'desc' },
      { property: 'type', direction: 'asc' },
      { property: 'status', direction: 'asc' },
    ]);
    expect(
      compileOrderBy(
        [
          { property: 'creationDateTimeUtc', direction: 'desc' },
          { property: 'type', direction: 'asc' },
        ],
        SET,
      ),
    ).toBe('a.created_at DESC, a.type ASC');
    expect(compileOrderBy([], SET)).toBe('');
  });

  it.each([
    ['$orderby=foo', "Unknown property 'foo' in $orderby"],
    ['$orderby=machineTags', "Property 'machineTags' cannot be used in $orderby"],
    ['$orderby=status,Status+desc', "Property 'status' appears more than once in $orderby"],
    ['$orderby=status+up', "Invalid sort direction 'up' in $orderby: expected asc or desc"],
    ['$orderby=status+asc+desc', "Invalid $orderby item 'status asc desc': expected '<property> [asc|desc]'"],
    ['$orderby=status,', '$orderby has an empty item'],
    ['$orderby=', '$orderby is empty'],
  ])('%s', (query, message) => {
    expect(errorOf(query)).toBe(message);
  });
});

describe('the compiler on hand-built ASTs', () => {
  const bad = (expr: unknown): string => {
    try {
      compileFilter(expr as FilterExpr, SET);
    } catch (e) {
      expect(e).toBeInstanceOf(ODataError);
      return (e as Error).message;
    }
    throw new Error('no error');
  };

  it('applies the whitelist and the type rules too', () => {
    expect(bad({ kind: 'compare', op: 'eq', property: 'a.id; DROP TABLE x', value: S('1') })).toBe(
      "Unknown property 'a.id; DROP TABLE x' in $filter",
    );
    expect(bad({ kind: 'compare', op: 'eq', property: 'riskScore', value: S('1') })).toMatch(/expected a number/);
    expect(bad({ kind: 'compare', op: 'eq', property: 'riskScore', value: { kind: 'number', value: NaN } })).toMatch(/expected a number/);
    expect(bad({ kind: 'compare', op: 'like', property: 'riskScore', value: { kind: 'number', value: 1 } })).toMatch(/operator/);
    expect(bad({ kind: 'in', property: 'status', values: [] })).toMatch(/at least one value/);
    expect(bad({ kind: 'what' })).toBe('Unsupported $filter expression');
    expect(bad(null)).toBe('Invalid $filter expression');
    expect(() => compileOrderBy([{ property: 'x', direction: 'asc' }], SET)).toThrow(ODataError);
  });

  it('normalises like the parser', () => {
    expect(compileFilter({ kind: 'compare', op: 'eq', property: 'STATUS', value: S('failed') }, SET)).toEqual({
      sql: 'a.status = ?',
      params: ['Failed'],
    });
    expect(compileFilter({ kind: 'compare', op: 'eq', property: 'id', value: S('ABC') }, SET).params).toEqual(['abc']);
  });

  it('survives very deep hand-built trees with an ODataError', () => {
    let deep: FilterExpr = eq('status', 'Pending');
    for (let i = 0; i < 100_000; i++) deep = { kind: 'not', operand: deep };
    expect(bad(deep)).toBe('$filter is nested too deeply');
    // Long same-operator chains are flattened, in either direction.
    let chain: FilterExpr = eq('status', 'Pending');
    for (let i = 0; i < 20_000; i++) chain = { kind: 'or', left: eq('requestor', String(i)), right: chain };
    expect(compileFilter(chain, SET).params).toHaveLength(20_001);
  });
});

describe('defineEntitySet', () => {
  it('rejects misconfigured sets with a plain Error', () => {
    const base = { name: 'X', maxTop: 10 };
    expect(() => defineEntitySet({ ...base, properties: [{ name: 'a', type: 'tags', column: '', existsSql: 'EXISTS (x)' }] })).toThrow(
      /exactly one '\?'/,
    );
    expect(() => defineEntitySet({ ...base, properties: [{ name: 'a', type: 'enum', column: 'a' }] })).toThrow(/no enumValues/);
    expect(() =>
      defineEntitySet({
        ...base,
        properties: [
          { name: 'a', type: 'string', column: 'a' },
          { name: 'A', type: 'string', column: 'b' },
        ],
      }),
    ).toThrow(/defined twice/);
  });
});

/**
 * Property tests of src/odata: print random ASTs and parse them back; throw nothing but
 * ODataError on garbage; agree with a plain JS evaluator on random SQLite data; never put a
 * literal value into SQL text.
 */
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ODataError,
  compileFilter,
  compileOrderBy,
  parseDateTime,
  parseQueryOptions,
  type CompareOp,
  type EntitySetDef,
  type FilterExpr,
  type Literal,
  type ODataQuery,
  type OrderByItem,
} from '../../src/odata/index.js';
import { SET, STATUSES, TYPES } from './odata-fixture.js';

// ---------------------------------------------------------------------------------------------
// The entity set (a machine-actions lookalike with a number and a tags property)


interface Row {
  rid: number;
  id: string | null;
  status: string | null;
  machineId: string | null;
  type: string | null;
  requestor: string | null;
  creationDateTimeUtc: number | null;
  riskScore: number | null;
  machineTags: string[];
}
type ScalarProp = Exclude<keyof Row, 'rid' | 'machineTags'>;

const ORDERABLE: ScalarProp[] = ['id', 'status', 'machineId', 'type', 'requestor', 'creationDateTimeUtc', 'riskScore'];
const ALL_OPS: CompareOp[] = ['eq', 'ne', 'gt', 'ge', 'lt', 'le'];
const FLIP: Record<CompareOp, CompareOp> = { eq: 'eq', ne: 'ne', gt: 'lt', ge: 'le', lt: 'gt', le: 'ge' };

// ---------------------------------------------------------------------------------------------
// Value generators: small pools, so filters and rows often meet

/** ASCII of both cases plus the characters SQL, LIKE and URLs care about. */
const ALPHABET = ['a', 'A', 'b', 'B', 'z', '0', ' ', '%', '_', '\\', "'", 'é', '+', '&', '=', '#', '?', '"', ';', '-'];
const str = fc.string({ unit: fc.constantFrom(...ALPHABET), maxLength: 4 });
const lowerStr = str.map((s) => s.toLowerCase());
const DATES = [
  Date.UTC(2019, 10, 22),
  Date.UTC(2019, 10, 22, 0, 0, 0, 123),
  Date.UTC(2020, 1, 29, 13, 45, 7),
  Date.UTC(1999, 11, 31, 23, 59, 59, 999),
  Date.UTC(2025, 4, 1, 10),
];
const datetime = fc.oneof(fc.constantFrom(...DATES), fc.integer({ min: Date.UTC(1000, 0, 2), max: Date.UTC(9998, 11, 30) }));
const smallNumber = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom(0.5, -2.25, 1.125, 1000000));
const anyNumber = fc.oneof(smallNumber, fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (x === 0 ? 0 : x)));

const lit = {
  str: (value: string): Literal => ({ kind: 'string', value }),
  num: (value: number): Literal => ({ kind: 'number', value }),
  dt: (value: number): Literal => ({ kind: 'datetime', value }),
  null: { kind: 'null' } as Literal,
};

/** A normalised literal for a property, as the parser would produce it. */
function literalFor(prop: ScalarProp, wide: boolean): fc.Arbitrary<Literal> {
  switch (prop) {
    case 'id':
      return lowerStr.map(lit.str);
    case 'status':
      return fc.constantFrom(...STATUSES).map(lit.str);
    case 'type':
      return fc.constantFrom(...TYPES).map(lit.str);
    case 'machineId':
    case 'requestor':
      return str.map(lit.str);
    case 'creationDateTimeUtc':
      return datetime.map(lit.dt);
    case 'riskScore':
      return (wide ? anyNumber : smallNumber).map(lit.num);
  }
}

function opsFor(prop: ScalarProp): CompareOp[] {
  return prop === 'id' || prop === 'status' || prop === 'type' ? ['eq', 'ne'] : ALL_OPS;
}

function leaf(wide: boolean): fc.Arbitrary<FilterExpr> {
  const scalar = fc.constantFrom(...ORDERABLE);
  const compare = scalar.chain((prop) =>
    fc.oneof(
      fc.record({
        kind: fc.constant('compare' as const),
        op: fc.constantFrom(...opsFor(prop)),
        property: fc.constant(prop),
        value: literalFor(prop, wide),
      }),
      fc.record({
        kind: fc.constant('compare' as const),
        op: fc.constantFrom<CompareOp>('eq', 'ne'),
        property: fc.constant(prop),
        value: fc.constant(lit.null),
      }),
    ),
  );
  const inList = scalar.chain((prop) =>
    fc.record({
      kind: fc.constant('in' as const),
      property: fc.constant(prop),
      values: fc.array(fc.oneof({ weight: 5, arbitrary: literalFor(prop, wide) }, { weight: 1, arbitrary: fc.constant(lit.null) }), {
        minLength: 1,
        maxLength: 4,
      }),
    }),
  );
  const startswith = fc.oneof(
    fc.record({ kind: fc.constant('startswith' as const), property: fc.constantFrom('requestor', 'machineId'), prefix: str }),
    fc.record({ kind: fc.constant('startswith' as const), property: fc.constant('id'), prefix: lowerStr }),
  );
  const any = fc.record({
    kind: fc.constant('any' as const),
    property: fc.constant('machineTags'),
    variable: fc.oneof(fc.constant('t'), fc.stringMatching(/^[a-z_][a-z0-9_]{0,5}$/)),
    value: str.map(lit.str),
  });
  return fc.oneof({ weight: 4, arbitrary: compare }, { weight: 2, arbitrary: inList }, startswith, any);
}

function filterArb(wide: boolean): fc.Arbitrary<FilterExpr> {
  const leaves = leaf(wide);
  return fc.letrec<{ node: FilterExpr; binary: FilterExpr; not: FilterExpr }>((tie) => ({
    node: fc.oneof({ maxDepth: 5, depthSize: 'small' }, leaves, tie('binary'), tie('not')),
    binary: fc.record({ kind: fc.constantFrom('and' as const, 'or' as const), left: tie('node'), right: tie('node') }),
    not: fc.record({ kind: fc.constant('not' as const), operand: tie('node') }),
  })).node;
}

// ---------------------------------------------------------------------------------------------
// The printer: an AST to $filter text, with random casing, spacing, operand order, literal forms

/** A stream of random choices that fast-check generates (and shrinks) with the AST. */
class Chooser {
  private i = 0;
  constructor(private readonly xs: readonly number[]) {}
  pick(n: number): number {
    const x = this.xs[this.i % this.xs.length] ?? 0;
    this.i++;
    return x % n;
  }
  flag(): boolean {
    return this.pick(2) === 1;
  }
  of<T>(items: readonly T[]): T {
    return items[this.pick(items.length)] as T;
  }
}
const choices = fc.array(fc.nat({ max: 10_000 }), { minLength: 1, maxLength: 64 });

function casing(c: Chooser, word: string): string {
  switch (c.pick(4)) {
    case 0:
      return word;
    case 1:
      return word.toUpperCase();
    case 2:
      return word.toLowerCase();
    default:
      return [...word].map((ch) => (c.flag() ? ch.toUpperCase() : ch.toLowerCase())).join('');
  }
}
const ws = (c: Chooser) => c.of([' ', ' ', '  ', '\t', ' \t ']);
const optWs = (c: Chooser) => c.of(['', '', ' ', '\t']);
const quoted = (s: string) => `'${s.replace(/'/g, "''")}'`;

function printDate(c: Chooser, ms: number): string {
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:mm:ss.sssZ
  const whole = ms % 1000 === 0;
  let text: string;
  switch (c.pick(6)) {
    case 0:
      text = iso;
      break;
    case 1:
      text = whole ? iso.replace('.000Z', 'Z') : iso.replace('Z', '0000Z');
      break;
    case 2: {
      const offset = (c.pick(28 * 4 + 1) - 14 * 4) * 15; // minutes, -14:00..+14:00
      const local = new Date(ms + offset * 60_000).toISOString().slice(0, 23);
      const abs = Math.abs(offset);
      const hhmm = `${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
      text = `${local}${offset < 0 ? '-' : '+'}${hhmm}`;
      break;
    }
    case 3:
      text = ms % 86_400_000 === 0 ? `${iso.slice(0, 10)}${c.of(['Z', ''])}` : iso;
      break;
    case 4:
      text = iso.slice(0, 23); // no zone: UTC
      break;
    default:
      text = iso.replace('T', 't').replace('Z', 'z');
  }
  return c.pick(4) === 0 ? `'${text}'` : text;
}

function printLiteral(c: Chooser, prop: string, l: Literal): string {
  switch (l.kind) {
    case 'null':
      return casing(c, 'null');
    case 'number':
      return String(l.value);
    case 'datetime':
      return printDate(c, l.value);
    case 'string':
      // The parser lower-cases guids and canonicalises enums: any casing must do.
      return quoted(prop === 'id' || prop === 'status' || prop === 'type' ? casing(c, l.value) : l.value);
  }
}

function wrap(c: Chooser, text: string, needed: boolean): string {
  return needed || c.pick(6) === 0 ? `(${optWs(c)}${text}${optWs(c)})` : text;
}

function printFilter(c: Chooser, e: FilterExpr): string {
  switch (e.kind) {
    case 'compare': {
      const name = casing(c, e.property);
      const value = printLiteral(c, e.property, e.value);
      return c.flag()
        ? `${value}${ws(c)}${casing(c, FLIP[e.op])}${ws(c)}${name}`
        : `${name}${ws(c)}${casing(c, e.op)}${ws(c)}${value}`;
    }
    case 'in': {
      const values = e.values.map((v) => printLiteral(c, e.property, v)).join(`${optWs(c)},${optWs(c)}`);
      return `${casing(c, e.property)}${ws(c)}${casing(c, 'in')}${optWs(c)}(${optWs(c)}${values}${optWs(c)})`;
    }
    case 'startswith': {
      const prefix = e.property === 'id' ? casing(c, e.prefix) : e.prefix;
      const call = `${casing(c, 'startswith')}(${optWs(c)}${casing(c, e.property)}${optWs(c)},${optWs(c)}${quoted(prefix)}${optWs(c)})`;
      return c.pick(3) === 0 ? `${call}${ws(c)}${casing(c, 'eq')}${ws(c)}${casing(c, 'true')}` : call;
    }
    case 'any': {
      const value = e.value.kind === 'string' ? quoted(e.value.value) : 'null';
      const name = casing(c, e.property);
      if (e.variable === 't' && c.flag()) return `${name}${ws(c)}${casing(c, 'eq')}${ws(c)}${value}`;
      const v = e.variable;
      const body = c.flag() ? `${v}${ws(c)}${casing(c, 'eq')}${ws(c)}${value}` : `${value}${ws(c)}${casing(c, 'eq')}${ws(c)}${v}`;
      return `${name}/${casing(c, 'any')}(${optWs(c)}${v}${optWs(c)}:${optWs(c)}${body}${optWs(c)})`;
    }
    case 'not': {
      const operand = e.operand;
      if (operand.kind === 'startswith' && c.pick(3) === 0) {
        const call = `${casing(c, 'startswith')}(${casing(c, operand.property)},${quoted(operand.prefix)})`;
        return `${call}${ws(c)}${casing(c, 'eq')}${ws(c)}${casing(c, 'false')}`;
      }
      const inner = wrap(c, printFilter(c, operand), operand.kind === 'and' || operand.kind === 'or');
      return `${casing(c, 'not')}${inner.startsWith('(') ? optWs(c) : ws(c)}${inner}`;
    }
    case 'and':
    case 'or': {
      const left = wrap(c, printFilter(c, e.left), e.kind === 'and' && e.left.kind === 'or');
      // Chains parse left-associatively, and 'and' binds tighter than 'or'.
      const right = wrap(c, printFilter(c, e.right), e.right.kind === 'or' || (e.kind === 'and' && e.right.kind === 'and'));
      return `${left}${ws(c)}${casing(c, e.kind)}${ws(c)}${right}`;
    }
  }
}

/** URL-encodes a value as clients do, spaces as '+' or %20. */
function encode(c: Chooser, value: string): string {
  const encoded = encodeURIComponent(value);
  return c.flag() ? encoded.replace(/%20/g, '+') : encoded;
}

// ---------------------------------------------------------------------------------------------
// The reference evaluator (OData semantics: a comparison with null is false, ne is its negation)

function compare(a: string | number, op: CompareOp, b: string | number): boolean {
  switch (op) {
    case 'eq':
      return a === b;
    case 'ne':
      return a !== b;
    case 'gt':
      return a > b;
    case 'ge':
      return a >= b;
    case 'lt':
      return a < b;
    case 'le':
      return a <= b;
  }
}

function evaluate(e: FilterExpr, row: Row): boolean {
  switch (e.kind) {
    case 'and':
      return evaluate(e.left, row) && evaluate(e.right, row);
    case 'or':
      return evaluate(e.left, row) || evaluate(e.right, row);
    case 'not':
      return !evaluate(e.operand, row);
    case 'compare': {
      const v = row[e.property as ScalarProp];
      if (e.value.kind === 'null') return e.op === 'eq' ? v === null : v !== null;
      if (v === null) return e.op === 'ne';
      return compare(v, e.op, e.value.value);
    }
    case 'in': {
      const v = row[e.property as ScalarProp];
      return e.values.some((l) => (l.kind === 'null' ? v === null : v === l.value));
    }
    case 'startswith': {
      const v = row[e.property as ScalarProp];
      return typeof v === 'string' && v.toLowerCase().startsWith(e.prefix.toLowerCase());
    }
    case 'any':
      return e.value.kind === 'string' && row.machineTags.includes(e.value.value);
  }
}

// ---------------------------------------------------------------------------------------------

let db: Database.Database;
beforeAll(() => {
  db = new Database(':memory:');
  db.exec(`CREATE TABLE actions (rid INTEGER PRIMARY KEY, id TEXT, status TEXT, machine_id TEXT, type TEXT,
             requestor TEXT, created_at INTEGER, risk_score REAL);
           CREATE TABLE action_tags (rid INTEGER NOT NULL, tag TEXT NOT NULL);`);
});
afterAll(() => db.close());

function select(sql: string, params: unknown[]): number[] {
  const rows = db.prepare(`SELECT a.rid FROM actions a WHERE ${sql} ORDER BY a.rid`).all(...params) as { rid: number }[];
  return rows.map((r) => r.rid);
}

/** Parses; on success compiles and runs the SQL (which must work). Returns the error, if any. */
function parseCompileRun(rawQuery: string): unknown {
  let q: ODataQuery;
  try {
    q = parseQueryOptions(rawQuery, SET);
  } catch (e) {
    return e;
  }
  const order = q.orderBy.length > 0 ? compileOrderBy(q.orderBy, SET) : 'a.rid';
  const where = q.filter ? compileFilter(q.filter, SET) : { sql: '1 = 1', params: [] };
  db.prepare(`SELECT a.rid FROM actions a WHERE ${where.sql} ORDER BY ${order}`).all(...where.params);
  return undefined;
}

const expectODataErrorOrNothing = (error: unknown) => {
  if (error !== undefined) expect(error).toBeInstanceOf(ODataError);
};

describe('round trip: print a random AST, parse it back', () => {
  const orderByArb: fc.Arbitrary<OrderByItem[]> = fc
    .uniqueArray(fc.constantFrom(...ORDERABLE), { maxLength: 3 })
    .chain((props) =>
      fc.tuple(...props.map((p) => fc.record({ property: fc.constant<string>(p), direction: fc.constantFrom('asc' as const, 'desc' as const) }))),
    );
  const queryArb = fc.record(
    {
      filter: filterArb(true),
      top: fc.integer({ min: 0, max: 10000 }),
      skip: fc.oneof(fc.nat({ max: 100 }), fc.constant(Number.MAX_SAFE_INTEGER)),
      orderBy: orderByArb,
      count: fc.boolean(),
    },
    { requiredKeys: ['orderBy', 'count'] },
  );

  it('gives back the same query', () => {
    fc.assert(
      fc.property(queryArb, choices, (query, xs) => {
        const c = new Chooser(xs);
        const parts: string[] = ['api-version=1.0', 'x=%ZZ'];
        const opt = (name: string) => `$${casing(c, name)}`;
        if (query.filter) parts.push(`${opt('filter')}=${encode(c, printFilter(c, query.filter))}`);
        if (query.top !== undefined) parts.push(`${opt('top')}=${query.top}`);
        if (query.skip !== undefined) parts.push(`${opt('skip')}=${query.skip}`);
        if (query.orderBy.length > 0 || c.flag()) {
          const items = query.orderBy.map((o) =>
            o.direction === 'asc' && c.flag() ? casing(c, o.property) : `${casing(c, o.property)}${ws(c)}${casing(c, o.direction)}`,
          );
          if (items.length > 0) parts.push(`${opt('orderby')}=${encode(c, items.join(`,${optWs(c)}`))}`);
        }
        if (query.count || c.flag()) parts.push(`${opt('count')}=${casing(c, String(query.count))}`);
        // Options in any order.
        const shuffled = parts.map((p) => [c.pick(1000), p] as const).sort((x, y) => x[0] - y[0]).map((x) => x[1]);
        const parsed = parseQueryOptions(shuffled.join('&'), SET);
        expect(parsed).toEqual({ ...query, skip: query.skip ?? 0 });
      }),
      { numRuns: 300 },
    );
  });

  it('parses every datetime form to the same instant as Date', () => {
    fc.assert(
      fc.property(datetime, choices, (ms, xs) => {
        const text = printDate(new Chooser(xs), ms).replace(/'/g, '');
        expect(parseDateTime(text)).toBe(ms);
        if (/[zZ]|[+-]\d\d:\d\d$/.test(text) && text.length > 11) expect(Date.parse(text.toUpperCase())).toBe(ms);
      }),
      { numRuns: 300 },
    );
  });
});

describe('garbage in: nothing but ODataError comes out', () => {
  const TOKENS = [
    'status', 'Status', 'riskScore', 'creationDateTimeUtc', 'machineTags', 'id', 'foo', ' ', '\t', ' eq ', ' ne ', ' gt ',
    ' le ', ' in ', ' and ', ' or ', 'not ', '(', ')', ',', ':', '/', "'", "''", "'Pending'", "'x'", '1', '-', '1.5', '1e',
    '2019-11-22', 'T00:00:00', 'Z', '+02:00', '.123', 'null', 'true', 'startswith(', 'any(', 't', ' t eq ', '%', '\\',
    '"', '\n', '\u0000', 'é', '\u{1F600}',
  ];
  const tokenSoup = fc.array(fc.constantFrom(...TOKENS), { maxLength: 30 }).map((ts) => ts.join(''));

  it('arbitrary query strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        expectODataErrorOrNothing(parseCompileRun(s));
        expectODataErrorOrNothing(parseCompileRun(`$filter=${s}`));
        expectODataErrorOrNothing(parseCompileRun(`$orderby=${s}`));
        expectODataErrorOrNothing(parseCompileRun(`$filter=${encodeURIComponent(s)}`));
      }),
      { numRuns: 300 },
    );
  });

  it('token soup', () => {
    fc.assert(
      fc.property(tokenSoup, (s) => {
        expectODataErrorOrNothing(parseCompileRun(`$filter=${encodeURIComponent(s)}`));
      }),
      { numRuns: 300 },
    );
  });

  it('mutations of valid filters', () => {
    const INSERTS = ['(', ')', "'", ',', ':', '/', ' ', 'not ', ' and ', ' or ', 'eq', '-', '.', '9', 'T', 'Z', '+', '%', 'null', '\u0000'];
    const mutation = fc.record({ at: fc.nat(), kind: fc.nat({ max: 2 }), text: fc.constantFrom(...INSERTS) });
    fc.assert(
      fc.property(filterArb(true), choices, fc.array(mutation, { minLength: 1, maxLength: 4 }), (ast, xs, mutations) => {
        let text = printFilter(new Chooser(xs), ast);
        for (const m of mutations) {
          const at = text.length === 0 ? 0 : m.at % text.length;
          if (m.kind === 0) text = text.slice(0, at) + text.slice(at + 1);
          else if (m.kind === 1) text = text.slice(0, at) + m.text + text.slice(at);
          else text = text.slice(0, at) + m.text + text.slice(at + 1);
        }
        expectODataErrorOrNothing(parseCompileRun(`$filter=${encodeURIComponent(text)}`));
      }),
      { numRuns: 300 },
    );
  });
});

describe('differential: the SQL selects exactly what the JS evaluator selects', () => {
  const rowArb = fc.record({
    id: fc.option(lowerStr, { nil: null }),
    status: fc.option(fc.constantFrom(...STATUSES), { nil: null }),
    machineId: fc.option(str, { nil: null }),
    type: fc.option(fc.constantFrom(...TYPES), { nil: null }),
    requestor: fc.option(str, { nil: null }),
    creationDateTimeUtc: fc.option(fc.constantFrom(...DATES), { nil: null }),
    riskScore: fc.option(smallNumber, { nil: null }),
    machineTags: fc.array(str, { maxLength: 3 }),
  });

  function load(rows: Omit<Row, 'rid'>[]): Row[] {
    const withIds = rows.map((r, i) => ({ ...r, rid: i + 1 }));
    const insert = db.prepare(
      'INSERT INTO actions VALUES (@rid, @id, @status, @machineId, @type, @requestor, @creationDateTimeUtc, @riskScore)',
    );
    const tag = db.prepare('INSERT INTO action_tags VALUES (?, ?)');
    db.transaction(() => {
      db.exec('DELETE FROM actions; DELETE FROM action_tags;');
      for (const r of withIds) {
        const { machineTags, ...columns } = r;
        insert.run(columns);
        for (const t of machineTags) tag.run(r.rid, t);
      }
    })();
    return withIds;
  }

  it('on random rows and random filters', () => {
    fc.assert(
      fc.property(fc.array(rowArb, { maxLength: 20 }), filterArb(false), (rows, ast) => {
        const loaded = load(rows);
        const { sql, params } = compileFilter(ast, SET);
        const expected = loaded.filter((r) => evaluate(ast, r)).map((r) => r.rid);
        expect(select(sql, params)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('also through the printer and the parser', () => {
    fc.assert(
      fc.property(fc.array(rowArb, { maxLength: 20 }), filterArb(false), choices, (rows, ast, xs) => {
        const loaded = load(rows);
        const c = new Chooser(xs);
        const parsed = parseQueryOptions(`$filter=${encode(c, printFilter(c, ast))}`, SET).filter;
        const { sql, params } = compileFilter(parsed!, SET);
        expect(select(sql, params)).toEqual(loaded.filter((r) => evaluate(ast, r)).map((r) => r.rid));
      }),
      { numRuns: 200 },
    );
  });
});

describe('no literal value ever reaches the SQL text', () => {
  const MARK = 'zqmark';
  const PAYLOADS = ["' OR 1=1 --", "'); DROP TABLE actions; --", '" OR ""="', "\\'", '%_%', '?', '$1', ':name', '/* x */'];
  const payload = fc.tuple(fc.constantFrom(...PAYLOADS), str).map(([p, s]) => `${MARK}${p}${s}`);
  const NUMBER_MARK = 987654.5;
  const DATE_MARK = 1234567890123;

  /** Replaces every value a client controls by a marked one (enums keep their canonical values). */
  function mark(e: FilterExpr, strings: string[]): FilterExpr {
    let k = 0;
    const next = () => strings[k++ % strings.length] as string;
    const markLiteral = (property: string, l: Literal): Literal => {
      if (l.kind === 'number') return { kind: 'number', value: NUMBER_MARK + k++ };
      if (l.kind === 'datetime') return { kind: 'datetime', value: DATE_MARK + k++ };
      if (l.kind === 'string' && property !== 'status' && property !== 'type') {
        const s = next();
        return { kind: 'string', value: property === 'id' ? s.toLowerCase() : s };
      }
      return l;
    };
    const walk = (x: FilterExpr): FilterExpr => {
      switch (x.kind) {
        case 'and':
        case 'or':
          return { kind: x.kind, left: walk(x.left), right: walk(x.right) };
        case 'not':
          return { kind: 'not', operand: walk(x.operand) };
        case 'compare':
          return { ...x, value: markLiteral(x.property, x.value) };
        case 'in':
          return { ...x, values: x.values.map((v) => markLiteral(x.property, v)) };
        case 'startswith':
          return { ...x, prefix: x.property === 'id' ? next().toLowerCase() : next() };
        case 'any':
          return { ...x, value: { kind: 'string', value: next() } };
      }
    };
    return walk(e);
  }

  function checkSql(sql: string, params: unknown[]): void {
    expect(sql).not.toContain(MARK);
    expect(sql).not.toContain('98765');
    expect(sql).not.toContain('1234567890');
    for (const v of [...STATUSES, ...TYPES]) expect(sql).not.toContain(v);
    expect(sql.split('?').length - 1).toBe(params.length);
    for (const p of params) expect(['string', 'number'].includes(typeof p) || p === null).toBe(true);
  }

  it('compiled directly', () => {
    fc.assert(
      fc.property(filterArb(false), fc.array(payload, { minLength: 1, maxLength: 5 }), (ast, strings) => {
        const marked = mark(ast, strings);
        const { sql, params } = compileFilter(marked, SET);
        checkSql(sql, params);
        select(sql, params); // and it runs
      }),
      { numRuns: 300 },
    );
  });

  it('through the printer and the parser', () => {
    fc.assert(
      fc.property(filterArb(false), fc.array(payload, { minLength: 1, maxLength: 5 }), choices, (ast, strings, xs) => {
        const c = new Chooser(xs);
        const q = parseQueryOptions(`$filter=${encode(c, printFilter(c, mark(ast, strings)))}`, SET);
        const { sql, params } = compileFilter(q.filter!, SET);
        checkSql(sql, params);
        select(sql, params);
      }),
      { numRuns: 300 },
    );
  });
});

/**
 * Recursive-descent parser of $filter (contract §5) into the typed AST.
 *
 *   filter     := or EOF
 *   or         := and ('or' and)*
 *   and        := unary ('and' unary)*
 *   unary      := 'not' unary | primary
 *   primary    := '(' or ')' | comparison
 *   comparison := operand op operand            (property op literal, or literal op property)
 *               | property 'in' '(' literal (',' literal)* ')'
 *               | 'startswith' '(' property ',' string ')' [ 'eq' ('true' | 'false') ]
 *               | tagsProperty '/' 'any' '(' var ':' var 'eq' string ')'
 *   op         := eq | ne | gt | ge | lt | le
 *
 * Keywords, function names and property names are case-insensitive. `not` applies to the
 * comparison or parenthesised group after it (`not status eq 'x'` is `not (status eq 'x')`;
 * there are no boolean properties for it to bind to otherwise). Chains of and/or build
 * left-associative trees.
 */
import { FILTER_LIMITS } from './ast.js';
import type { CompareOp, EntitySetDef, FilterExpr, Literal, PropertyDef } from './ast.js';
import { ODataError, filterSyntaxError, quote } from './errors.js';
import { tokenize, type PunctType, type Token } from './lexer.js';
import { checkStringValue, coerceLiteral, requireProperty } from './schema.js';

type RawLiteral = Literal | { kind: 'boolean'; value: boolean };

type Operand =
  | { form: 'property'; prop: PropertyDef; pos: number }
  | { form: 'literal'; lit: RawLiteral; pos: number }
  | { form: 'startswith'; prop: PropertyDef; prefix: string; pos: number }
  | { form: 'any'; prop: PropertyDef; variable: string; value: string; pos: number };

const COMPARE_OPS: ReadonlySet<string> = new Set(['eq', 'ne', 'gt', 'ge', 'lt', 'le']);
const RESERVED: ReadonlySet<string> = new Set(['and', 'or', 'not', 'eq', 'ne', 'gt', 'ge', 'lt', 'le', 'in']);
const FLIPPED: Record<CompareOp, CompareOp> = { eq: 'eq', ne: 'ne', gt: 'lt', ge: 'le', lt: 'gt', le: 'ge' };

/** The variable name given to the AST of the bare form `machineTags eq 'x'`. */
export const BARE_TAGS_VARIABLE = 't';

function describeToken(t: Token): string {
  switch (t.type) {
    case 'eof':
      return 'the end of the filter';
    case 'ident':
      return quote(t.text);
    case 'string':
      return `the string ${quote(t.value)}`;
    case 'number':
    case 'datetime':
      return quote(t.text);
    default:
      return `'${t.type}'`;
  }
}

function isKeyword(t: Token, keyword: string): boolean {
  return t.type === 'ident' && t.text.toLowerCase() === keyword;
}

/** Parses a decoded $filter value. Throws only ODataError. */
export function parseFilter(text: string, set: EntitySetDef): FilterExpr {
  if (text.length > FILTER_LIMITS.maxLength) {
    throw new ODataError(`$filter is longer than ${FILTER_LIMITS.maxLength} characters`, { option: '$filter' });
  }
  const tokens = tokenize(text);
  if (tokens.length === 1) throw new ODataError('$filter is empty', { option: '$filter' });
  return new FilterParser(tokens, set).parse();
}

class FilterParser {
  private index = 0;
  private depth = 0;
  private inValues = 0;

  constructor(
    private readonly tokens: readonly Token[],
    private readonly set: EntitySetDef,
  ) {}

  parse(): FilterExpr {
    const expr = this.parseOr();
    const t = this.peek();
    if (t.type !== 'eof') {
      const detail = t.type === ')' ? "unbalanced ')'" : `expected 'and', 'or' or the end of the filter, found ${describeToken(t)}`;
      throw filterSyntaxError(t.pos, detail);
    }
    return expr;
  }

  private peek(offset = 0): Token {
    const last = this.tokens[this.tokens.length - 1] as Token;
    return this.tokens[this.index + offset] ?? last;
  }

  private next(): Token {
    const t = this.peek();
    if (t.type !== 'eof') this.index++;
    return t;
  }

  private expect(type: PunctType, what = `'${type}'`): Token {
    const t = this.next();
    if (t.type !== type) throw filterSyntaxError(t.pos, `expected ${what}, found ${describeToken(t)}`);
    return t;
  }

  private enter(pos: number): void {
    this.depth++;
    if (this.depth > FILTER_LIMITS.maxDepth) {
      throw new ODataError(
        `$filter is nested too deeply at position ${pos} (at most ${FILTER_LIMITS.maxDepth} levels of parentheses and 'not')`,
        { option: '$filter', position: pos },
      );
    }
  }

  private parseOr(): FilterExpr {
    let left = this.parseAnd();
    while (isKeyword(this.peek(), 'or')) {
      this.index++;
      const right = this.parseAnd();
      left = { kind: 'or', left, right };
    }
    return left;
  }

  private parseAnd(): FilterExpr {
    let left = this.parseUnary();
    while (isKeyword(this.peek(), 'and')) {
      this.index++;
      const right = this.parseUnary();
      left = { kind: 'and', left, right };
    }
    return left;
  }

  private parseUnary(): FilterExpr {
    const t = this.peek();
    if (isKeyword(t, 'not')) {
      this.index++;
      this.enter(t.pos);
      const operand = this.parseUnary();
      this.depth--;
      return { kind: 'not', operand };
    }
    return this.parsePrimary();
  }

  private parsePrimary(): FilterExpr {
    const t = this.peek();
    if (t.type === '(') {
      this.index++;
      this.enter(t.pos);
      const expr = this.parseOr();
      this.expect(')');
      this.depth--;
      return expr;
    }
    return this.parseComparison();
  }

  private parseComparison(): FilterExpr {
    const left = this.parseOperand();
    if (left.form === 'any') {
      return { kind: 'any', property: left.prop.name, variable: left.variable, value: { kind: 'string', value: left.value } };
    }
    if (left.form === 'startswith') return this.finishStartswith(left);

    const opToken = this.peek();
    const op = opToken.type === 'ident' ? opToken.text.toLowerCase() : '';
    if (op === 'in') {
      this.index++;
      return this.finishIn(left, opToken);
    }
    if (!COMPARE_OPS.has(op)) {
      throw filterSyntaxError(
        opToken.pos,
        `expected an operator (eq, ne, gt, ge, lt, le or in), found ${describeToken(opToken)}`,
      );
    }
    this.index++;
    const right = this.parseOperand();
    const compareOp = op as CompareOp;

    if (right.form === 'startswith' || right.form === 'any') {
      throw filterSyntaxError(right.pos, `expected a literal after '${op}'`);
    }
    if (left.form === 'property' && right.form === 'literal') return this.compare(left.prop, compareOp, right.lit);
    if (left.form === 'literal' && right.form === 'property') return this.compare(right.prop, FLIPPED[compareOp], left.lit);
    if (left.form === 'property' && right.form === 'property') {
      throw new ODataError(
        `Cannot compare property '${left.prop.name}' with property '${right.prop.name}' in $filter; one side must be a literal`,
        { option: '$filter' },
      );
    }
    throw filterSyntaxError(left.pos, `a comparison needs a property on one side, found two literals`);
  }

  private compare(prop: PropertyDef, op: CompareOp, lit: RawLiteral): FilterExpr {
    if (prop.type === 'tags') {
      if (op !== 'eq' || lit.kind !== 'string') {
        throw new ODataError(
          `Property '${prop.name}' only supports ${prop.name} eq '...' or ${prop.name}/any(t: t eq '...') in $filter`,
          { option: '$filter' },
        );
      }
      return {
        kind: 'any',
        property: prop.name,
        variable: BARE_TAGS_VARIABLE,
        value: { kind: 'string', value: checkStringValue(lit.value, '$filter') },
      };
    }
    return { kind: 'compare', op, property: prop.name, value: coerceLiteral(prop, op, lit) };
  }

  private finishIn(left: Operand, opToken: Token): FilterExpr {
    if (left.form !== 'property') throw filterSyntaxError(opToken.pos, "the left side of 'in' must be a property");
    const prop = left.prop;
    if (prop.type === 'tags') {
      throw new ODataError(
        `Property '${prop.name}' does not support 'in' in $filter; use ${prop.name}/any(t: t eq '...') joined with 'or'`,
        { option: '$filter' },
      );
    }
    this.expect('(', "'(' after 'in'");
    const values: Literal[] = [];
    for (;;) {
      const t = this.next();
      const lit = this.literalOf(t);
      if (!lit) throw filterSyntaxError(t.pos, `expected a literal in the 'in' list, found ${describeToken(t)}`);
      this.inValues++;
      if (this.inValues > FILTER_LIMITS.maxInValues) {
        throw new ODataError(`$filter has more than ${FILTER_LIMITS.maxInValues} values in 'in' lists`, {
          option: '$filter',
          position: t.pos,
        });
      }
      values.push(coerceLiteral(prop, 'eq', lit));
      const sep = this.next();
      if (sep.type === ')') break;
      if (sep.type !== ',') throw filterSyntaxError(sep.pos, `expected ',' or ')' in the 'in' list, found ${describeToken(sep)}`);
    }
    return { kind: 'in', property: prop.name, values };
  }

  private finishStartswith(call: Extract<Operand, { form: 'startswith' }>): FilterExpr {
    const node: FilterExpr = { kind: 'startswith', property: call.prop.name, prefix: call.prefix };
    const t = this.peek();
    if (t.type !== 'ident') return node;
    const op = t.text.toLowerCase();
    if (op === 'eq') {
      const b = this.peek(1);
      const value = b.type === 'ident' ? b.text.toLowerCase() : '';
      if (value !== 'true' && value !== 'false') {
        throw filterSyntaxError(b.pos, `expected true or false after 'startswith(...) eq', found ${describeToken(b)}`);
      }
      this.index += 2;
      return value === 'true' ? node : { kind: 'not', operand: node };
    }
    if (COMPARE_OPS.has(op) || op === 'in') {
      throw filterSyntaxError(t.pos, "startswith(...) can only be followed by 'eq true' or 'eq false'");
    }
    return node;
  }

  /** A literal token as a literal, or undefined. */
  private literalOf(t: Token): RawLiteral | undefined {
    switch (t.type) {
      case 'string':
        return { kind: 'string', value: t.value };
      case 'number':
        return { kind: 'number', value: t.value };
      case 'datetime':
        return { kind: 'datetime', value: t.value };
      case 'ident': {
        const word = t.text.toLowerCase();
        if (word === 'null') return { kind: 'null' };
        if (word === 'true' || word === 'false') return { kind: 'boolean', value: word === 'true' };
        return undefined;
      }
      default:
        return undefined;
    }
  }

  private parseOperand(): Operand {
    const t = this.next();
    const lit = this.literalOf(t);
    if (lit) return { form: 'literal', lit, pos: t.pos };
    if (t.type !== 'ident') {
      throw filterSyntaxError(t.pos, `expected a property name or a literal, found ${describeToken(t)}`);
    }
    const word = t.text.toLowerCase();
    if (RESERVED.has(word)) {
      throw filterSyntaxError(t.pos, `expected a property name or a literal, found the keyword ${quote(t.text)}`);
    }
    if (this.peek().type === '(') return this.parseFunction(t);
    const prop = requireProperty(this.set, t.text, '$filter');
    if (this.peek().type === '/') return this.parseLambda(prop, t.pos);
    return { form: 'property', prop, pos: t.pos };
  }

  private parseFunction(name: Extract<Token, { type: 'ident' }>): Operand {
    if (name.text.toLowerCase() !== 'startswith') {
      throw new ODataError(`Unsupported function ${quote(name.text)} in $filter; the only function supported is startswith`, {
        option: '$filter',
        position: name.pos,
      });
    }
    this.expect('(');
    const arg = this.next();
    if (arg.type !== 'ident' || RESERVED.has(arg.text.toLowerCase())) {
      throw filterSyntaxError(arg.pos, `expected a property name as the first argument of startswith, found ${describeToken(arg)}`);
    }
    const prop = requireProperty(this.set, arg.text, '$filter');
    if (prop.type !== 'string' && prop.type !== 'guid') {
      throw new ODataError(
        `startswith is not supported on property '${prop.name}' (${prop.type}) in $filter; it needs a string property`,
        { option: '$filter' },
      );
    }
    this.expect(',', "',' after the property in startswith");
    const prefix = this.next();
    if (prefix.type !== 'string') {
      throw filterSyntaxError(prefix.pos, `expected a string in single quotes as the second argument of startswith, found ${describeToken(prefix)}`);
    }
    this.expect(')', "')' after the arguments of startswith");
    const value = checkStringValue(prefix.value, '$filter');
    return { form: 'startswith', prop, prefix: prop.type === 'guid' ? value.toLowerCase() : value, pos: name.pos };
  }

  private parseLambda(prop: PropertyDef, pos: number): Operand {
    if (prop.type !== 'tags') {
      throw new ODataError(`Property '${prop.name}' is not a collection; /any(...) is not supported on it in $filter`, {
        option: '$filter',
      });
    }
    this.expect('/');
    const fn = this.next();
    const fnName = fn.type === 'ident' ? fn.text.toLowerCase() : '';
    if (fnName === 'all') {
      throw new ODataError(`Lambda operator 'all' is not supported in $filter; use ${prop.name}/any(t: t eq '...')`, {
        option: '$filter',
      });
    }
    if (fnName !== 'any') throw filterSyntaxError(fn.pos, `expected 'any' after '${prop.name}/', found ${describeToken(fn)}`);
    this.expect('(', "'(' after 'any'");
    const variable = this.next();
    if (variable.type !== 'ident') {
      throw filterSyntaxError(variable.pos, `expected a variable name in any(...), found ${describeToken(variable)}`);
    }
    this.expect(':', `':' after the variable '${variable.text}'`);
    const a = this.next();
    const op = this.next();
    if (!isKeyword(op, 'eq')) {
      throw filterSyntaxError(op.pos, `expected 'eq' in ${prop.name}/any(...), found ${describeToken(op)}`);
    }
    const b = this.next();
    const isVar = (t: Token): boolean => t.type === 'ident' && t.text === variable.text;
    let value: string;
    if (isVar(a) && b.type === 'string') value = b.value;
    else if (isVar(b) && a.type === 'string') value = a.value;
    else if (!isVar(a) && !isVar(b)) {
      throw filterSyntaxError(a.pos, `expected the lambda variable '${variable.text}' in ${prop.name}/any(...), found ${describeToken(a)}`);
    } else {
      const other = isVar(a) ? b : a;
      throw filterSyntaxError(other.pos, `expected a string in single quotes in ${prop.name}/any(...), found ${describeToken(other)}`);
    }
    this.expect(')', `')' to close ${prop.name}/any(...)`);
    return { form: 'any', prop, variable: variable.text, value: checkStringValue(value, '$filter'), pos };
  }
}

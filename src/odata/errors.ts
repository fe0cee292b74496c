/**
 * The only exception the OData parser and compiler throw for bad input. Its message is shown
 * to API clients (400 `ODataError`), so it names the problem precisely.
 */
export class ODataError extends Error {
  override name = 'ODataError';
  /** The query option at fault, e.g. '$filter', when known. */
  readonly option: string | undefined;
  /** For $filter syntax errors: the 0-based character position in the decoded $filter. */
  readonly position: number | undefined;

  constructor(message: string, details: { option?: string; position?: number } = {}) {
    super(message);
    this.option = details.option;
    this.position = details.position;
  }
}

/** A syntax error in $filter, at a 0-based position of the decoded value. */
export function filterSyntaxError(position: number, detail: string): ODataError {
  return new ODataError(`Syntax error at position ${position} in $filter: ${detail}`, {
    option: '$filter',
    position,
  });
}

const MAX_ECHO = 64;

/**
 * Client-supplied text quoted for an error message: single quotes, control characters shown
 * as \uXXXX, and cut at 64 characters so a huge input does not make a huge message.
 */
export function quote(text: string): string {
  let end = MAX_ECHO;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--; // do not split a surrogate pair
  const cut = text.length > MAX_ECHO ? `${text.slice(0, end)}...` : text;
  // eslint-disable-next-line no-control-regex
  const shown = cut.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return `'${shown}'`;
}

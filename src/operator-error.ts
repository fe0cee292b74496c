/**
 * A failure the operator can fix (a data dir that cannot be written, a port in use, a lock held,
 * a missing key): its message says what, with the path or value, and how to fix it. The CLI
 * prints it as one line and exits 2, never with a stack trace.
 */
export class OperatorError extends Error {
  override name = 'OperatorError';
}

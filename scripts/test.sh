#!/usr/bin/env bash
# The whole test suite: type check, then every vitest tier. Starts a throwaway PostgreSQL for
# the PostgreSQL tests unless COUNTERMAND_TEST_PG_URL already names one. Extra arguments go to
# vitest (e.g. `npm test -- test/api`).
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json --noEmit
npx tsc -p web/tsconfig.json --noEmit
if [ -z "${COUNTERMAND_TEST_PG_URL:-}" ] && [ -x "${PGBIN:-/usr/lib/postgresql/15/bin}/postgres" ]; then
  eval "$(scripts/throwaway-postgres.sh)"
  trap 'scripts/throwaway-postgres.sh stop "$COUNTERMAND_TEST_PG_DIR"' EXIT
fi
npx vitest run "$@"

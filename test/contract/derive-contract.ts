/**
 * Derives the copy of the connector's Swagger description that the contract check runs
 * (../shared/contract/README.md says: never edit the original). The original is kept as is on
 * disk; this returns a corrected subset:
 * - only the machine, machine-action, alert and investigation paths Countermand serves (contract
 *   §2); the others are listed with the reason they are left out;
 * - path parameters without spaces (`{Machine ID}` -> `{machineId}`), with examples;
 * - `int32` formats dropped (they trip validators); getPackageUri answers 200, not 201;
 * - every response property may be null: MDE sends unset fields as null (contract §3), which
 *   the description's `type: string` etc. would refuse;
 * - responses are declared with MDE's full content type (`application/json; odata.metadata=
 *   minimal; odata.streaming=true; charset=utf-8`, contract §1), which the description shortens
 *   to `application/json`; a checker comparing the header exactly would otherwise refuse MDE too;
 * - the optional OData query parameters (`$filter`, `$top`, ...) are dropped: Dredd cannot expand
 *   a `$` in a URI template and would silently skip the list operations; OData itself is covered
 *   by test/api/odata.test.ts;
 * - offboard answers a MachineAction (contract §2 row 11), not the Investigation the description
 *   names;
 * - enum typos fixed (`exposureLevel` "Non" -> "None"; `riskScore` gains "Informational");
 *   `systemProductName` is not a date-time.
 */

type Json = Record<string, unknown>;

const ODATA_JSON = 'application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8';

/** The paths the contract covers (§2): machines, machine actions, alerts, investigations. */
const CHECKED_PATHS = ['/api/machines', '/api/machineactions', '/api/alerts', '/api/investigations'];

/** Operations of those paths that are not served, and why. */
export const EXCLUDED: Readonly<Record<string, string>> = {
  'PATCH /api/alerts/{Alert ID}': "alerts are read-only: only agents' findings raise them, and the contract has no update (§2 rows 22-23, §10)",
  'POST /api/alerts/createAlertByReference': 'alerts come only from what agents find; none is created through the API (§10)',
  'POST /api/machines/{Machine ID}/tags': 'machine tags are not part of the machine-actions contract',
  'GET /api/machines/{Machine ID}/software': 'threat and vulnerability management is outside the contract',
  'GET /api/machines/{Machine ID}/vulnerabilities': 'threat and vulnerability management is outside the contract',
  'GET /api/machines/{Machine ID}/recommendations': 'threat and vulnerability management is outside the contract',
};

const PARAM_NAMES: Readonly<Record<string, string>> = {
  'Machine ID': 'machineId',
  'Machine Action ID': 'actionId',
  'Machine action ID': 'actionId',
  'Command Index': 'index',
  'Alert ID': 'alertId',
  'Investigation ID': 'investigationId',
};

export interface Examples {
  machineId: string;
  actionId: string;
  /** An alert a machine's report raised, and an investigation, for the single-entity reads. */
  alertId: string;
  investigationId: string;
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** Walks a schema: drops int32 formats, lets every property be null. */
function relax(schema: unknown): void {
  if (Array.isArray(schema)) return schema.forEach(relax);
  if (typeof schema !== 'object' || schema === null) return;
  const s = schema as Json;
  if (s.format === 'int32') delete s.format;
  if (s.properties && typeof s.properties === 'object') {
    for (const property of Object.values(s.properties as Json)) {
      (property as Json)['x-nullable'] = true;
    }
  }
  for (const value of Object.values(s)) relax(value);
}

export function deriveContract(original: Json, examples: Examples): { spec: Json; served: string[]; excluded: [string, string][] } {
  const source = clone(original);
  const paths: Json = {};
  const served: string[] = [];
  const excluded: [string, string][] = [];
  for (const [path, item] of Object.entries(source.paths as Json)) {
    if (!CHECKED_PATHS.some((p) => path === p || path.startsWith(`${p}/`))) continue;
    for (const [method, operation] of Object.entries(item as Json)) {
      const key = `${method.toUpperCase()} ${path}`;
      const reason = EXCLUDED[key];
      if (reason) {
        excluded.push([key, reason]);
        continue;
      }
      const op = operation as Json & { parameters?: Json[]; responses: Json };
      op.produces = [ODATA_JSON];
      op.parameters = (op.parameters ?? []).filter((p) => !(p.in === 'query' && String(p.name).startsWith('$')));
      if (op.operationId === 'OffboardMachine') {
        op.responses = { '201': { description: 'Created', schema: { $ref: '#/definitions/MachineAction' } } };
      }
      if (op.operationId === 'GetInvestigationPackageUri') {
        // A GET that creates nothing: MDE answers 200 (contract §2 row 8); the description says 201.
        op.responses = { '200': { ...(op.responses['201'] as Json), description: 'OK' } };
      }
      let newPath = path;
      for (const parameter of op.parameters ?? []) {
        const renamed = PARAM_NAMES[parameter.name as string];
        if (parameter.in === 'path' && renamed) {
          newPath = newPath.replace(`{${parameter.name as string}}`, `{${renamed}}`);
          parameter.name = renamed;
          parameter['x-example'] = renamed === 'index' ? 0 : (examples[renamed as keyof Examples] ?? examples.actionId);
        }
      }
      const target = ((paths[newPath] as Json | undefined) ?? (paths[newPath] = {})) as Json;
      target[method] = op;
      served.push(`${method.toUpperCase()} ${newPath}`);
    }
  }
  const definitions = source.definitions as Record<string, Json & { properties: Record<string, Json> }>;
  const machine = definitions.Machine!.properties;
  machine.exposureLevel!.enum = ['None', 'Low', 'Medium', 'High'];
  machine.riskScore!.enum = ['None', 'Informational', 'Low', 'Medium', 'High'];
  delete machine.systemProductName!.format;
  const spec: Json = {
    ...source,
    host: undefined,
    schemes: ['http'],
    produces: [ODATA_JSON],
    paths,
    definitions,
    securityDefinitions: undefined,
  };
  // Responses only: request bodies are what clients send, and the hooks send valid ones.
  for (const item of Object.values(paths)) {
    for (const operation of Object.values(item as Json)) relax((operation as Json).responses);
  }
  relax(spec.definitions);
  return { spec: JSON.parse(JSON.stringify(spec)) as Json, served, excluded };
}

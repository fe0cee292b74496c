import type { TSchema } from 'typebox';
import { ACTION_DEFINITIONS, CommentBody } from '../domain/catalog.js';
import { Alert, Investigation, LibraryFile, Machine, MachineAction } from './wire-schemas.js';

/**
 * The CSDL (OData 4.0 EDMX) document every `@odata.context` points at: GET /api/$metadata. It
 * is generated from the same schemas as the OpenAPI document (wire-schemas.ts), so the two
 * cannot disagree, and from the action catalog for the bound actions (docs/api-decisions.md).
 */

export const NAMESPACE = 'microsoft.windowsDefenderATP.api';
const CONTAINER = 'DefenderATPContainer';

interface EntitySet {
  name: string;
  type: string;
  schema: TSchema;
  key: string;
}

/** The entity sets the contexts name (`#MachineActions`, `#Machines/$entity`, ...). */
export const ENTITY_SETS: readonly EntitySet[] = [
  { name: 'MachineActions', type: 'MachineAction', schema: MachineAction, key: 'id' },
  { name: 'Machines', type: 'Machine', schema: Machine, key: 'id' },
  { name: 'Alerts', type: 'Alert', schema: Alert, key: 'id' },
  { name: 'Investigations', type: 'Investigation', schema: Investigation, key: 'id' },
  { name: 'LibraryFiles', type: 'LibraryFile', schema: LibraryFile, key: 'fileName' },
];

type Json = Record<string, unknown>;

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const pascal = (name: string) => name.charAt(0).toUpperCase() + name.slice(1);

/** A schema without its `null` alternative, and whether it had one. */
function unwrapNull(schema: Json): { schema: Json; nullable: boolean } {
  const anyOf = schema.anyOf as Json[] | undefined;
  if (!anyOf) return { schema, nullable: false };
  const rest = anyOf.filter((s) => s.type !== 'null');
  return { schema: rest.length === 1 ? rest[0]! : { anyOf: rest }, nullable: rest.length < anyOf.length };
}

class CsdlWriter {
  private readonly complexTypes = new Map<string, string>();

  /** The Edm type of a schema; objects become complex types named by title or by where they are. */
  typeOf(schema: Json, nameIfObject: string): string {
    if (schema.type === 'array') return `Collection(${this.typeOf(unwrapNull(schema.items as Json).schema, nameIfObject)})`;
    if (schema.type === 'object') return `${NAMESPACE}.${this.complexType(schema, nameIfObject)}`;
    if (schema.type === 'boolean') return 'Edm.Boolean';
    if (schema.type === 'integer') return 'Edm.Int64';
    if (schema.type === 'number') return 'Edm.Double';
    if (schema.format === 'uuid') return 'Edm.Guid';
    if (schema.format === 'date-time') return 'Edm.DateTimeOffset';
    // Strings, enumerations (MDE clients compare them as strings) and constants.
    return 'Edm.String';
  }

  properties(schema: Json, owner: string): string[] {
    const required = new Set((schema.required as string[] | undefined) ?? []);
    return Object.entries((schema.properties as Record<string, Json> | undefined) ?? {}).map(([name, raw]) => {
      const { schema: inner, nullable } = unwrapNull(raw);
      const type = this.typeOf(inner, `${owner}${pascal(name)}`);
      const notNull = !nullable && required.has(name);
      return `<Property Name="${escape(name)}" Type="${escape(type)}" Nullable="${notNull ? 'false' : 'true'}"/>`;
    });
  }

  private complexType(schema: Json, fallback: string): string {
    const name = typeof schema.title === 'string' ? schema.title : fallback;
    if (!this.complexTypes.has(name)) {
      this.complexTypes.set(name, ''); // reserved first: a type may refer to itself
      const body = this.properties(schema, name);
      this.complexTypes.set(name, `<ComplexType Name="${escape(name)}">${body.join('')}</ComplexType>`);
    }
    return name;
  }

  entityType(set: EntitySet): string {
    const body = this.properties(set.schema as unknown as Json, set.type);
    return `<EntityType Name="${set.type}"><Key><PropertyRef Name="${set.key}"/></Key>${body.join('')}</EntityType>`;
  }

  /** A bound action: its body's fields are its parameters. */
  action(name: string, boundTo: string, body: TSchema, returns: string): string {
    const params = this.properties(body as unknown as Json, pascal(name)).map((p) => p.replace('<Property ', '<Parameter '));
    return (
      `<Action Name="${escape(name)}" IsBound="true"><Parameter Name="bindingParameter" Type="${NAMESPACE}.${boundTo}" Nullable="false"/>` +
      `${params.join('')}<ReturnType Type="${NAMESPACE}.${returns}" Nullable="false"/></Action>`
    );
  }

  complexTypesXml(): string {
    return [...this.complexTypes.values()].join('');
  }
}

function build(): string {
  const w = new CsdlWriter();
  const entityTypes = ENTITY_SETS.map((set) => w.entityType(set));
  const actions = [
    ...ACTION_DEFINITIONS.map((d) => w.action(d.route, 'Machine', d.body, 'MachineAction')),
    w.action('startInvestigation', 'Machine', CommentBody, 'Investigation'),
    w.action('cancel', 'MachineAction', CommentBody, 'MachineAction'),
  ];
  const findByIp =
    `<Function Name="findbyip" IsBound="true"><Parameter Name="bindingParameter" Type="Collection(${NAMESPACE}.Machine)" Nullable="false"/>` +
    '<Parameter Name="ip" Type="Edm.String" Nullable="false"/><Parameter Name="timestamp" Type="Edm.DateTimeOffset" Nullable="false"/>' +
    `<ReturnType Type="Collection(${NAMESPACE}.Machine)" Nullable="false"/></Function>`;
  const sets = ENTITY_SETS.map((s) => `<EntitySet Name="${s.name}" EntityType="${NAMESPACE}.${s.type}"/>`).join('');
  return (
    '<?xml version="1.0" encoding="utf-8"?>' +
    '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>' +
    `<Schema Namespace="${NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">` +
    entityTypes.join('') +
    w.complexTypesXml() +
    actions.join('') +
    findByIp +
    `<EntityContainer Name="${CONTAINER}">${sets}</EntityContainer>` +
    '</Schema></edmx:DataServices></edmx:Edmx>'
  );
}

let cached: string | null = null;

/** The document (built once: it depends only on the code). */
export function csdlDocument(): string {
  cached ??= build();
  return cached;
}

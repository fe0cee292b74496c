import { Type, type TObject, type TSchema } from 'typebox';
import { ACTION_STATUSES, ACTION_TYPES, ALERT_SEVERITIES, ALERT_STATUSES, COMMAND_TYPES, HEALTH_STATUSES, INVESTIGATION_STATES } from '../domain/model.js';
import type { EntitySetDef } from '../odata/index.js';

/**
 * The wire shapes of wire.ts as JSON Schema, field for field and in the same order, for the
 * OpenAPI document and the $metadata CSDL. Documentation only: no route serialises with them
 * (the handlers write their bytes themselves). test/api/openapi.test.ts checks real responses
 * against them, field order included. A schema's `title` names it in the document's components
 * and in the CSDL.
 */

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/** MDE's time format: ISO 8601 UTC with seven fractional digits (contract §3). */
export const WireTime = Type.String({
  format: 'date-time',
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{7}Z$',
  examples: ['2025-05-01T10:00:00.1230000Z'],
});
export const Guid = Type.String({ format: 'uuid', examples: ['7c1a2cbc-2a4f-4b7e-9a0a-2f3b5d1e9c11'] });
export const MachineId = Type.String({ pattern: '^[0-9a-f]{40}$', description: '40 lower-case hex characters.' });
const Text = Type.String();

export const RelatedFileInfo = Type.Object(
  { fileIdentifier: Text, fileIdentifierType: Type.Literal('Sha1') },
  { title: 'RelatedFileInfo' },
);

export const LiveResponseCommand = Type.Object(
  {
    index: Type.Integer({ minimum: 0 }),
    startTime: Nullable(WireTime),
    endTime: Nullable(WireTime),
    commandStatus: Type.Enum(['Created', 'Completed', 'Failed']),
    errors: Type.Array(Text),
    command: Type.Object({
      type: Type.Enum(COMMAND_TYPES),
      params: Type.Array(Type.Object({ key: Text, value: Text })),
    }),
  },
  { title: 'LiveResponseCommand' },
);

/** Contract §3. */
export const MachineAction = Type.Object(
  {
    id: Guid,
    type: Type.Enum(ACTION_TYPES),
    title: Nullable(Text),
    requestor: Type.String({ description: "The application's display name, or the user's UPN." }),
    requestorComment: Nullable(Text),
    status: Type.Enum(ACTION_STATUSES),
    machineId: MachineId,
    computerDnsName: Nullable(Text),
    creationDateTimeUtc: WireTime,
    lastUpdateDateTimeUtc: WireTime,
    cancellationRequestor: Nullable(Text),
    cancellationComment: Nullable(Text),
    cancellationDateTimeUtc: Nullable(WireTime),
    errorHResult: Type.Integer(),
    scope: Nullable(Type.String({ description: 'Full, Selective or UnManagedDevice for Isolate; Quick or Full for scans.' })),
    externalId: Nullable(Text),
    requestSource: Type.String({ examples: ['PublicApi'] }),
    relatedFileInfo: Nullable(RelatedFileInfo),
    commands: Type.Array(LiveResponseCommand),
    troubleshootInfo: Nullable(Text),
  },
  { title: 'MachineAction', description: 'A response action on one machine (contract §3).' },
);

export const IpAddress = Type.Object(
  { ipAddress: Text, macAddress: Nullable(Text), type: Nullable(Text), operationalStatus: Nullable(Text) },
  { title: 'IpAddress' },
);

/** Contract §9. */
export const Machine = Type.Object(
  {
    id: MachineId,
    computerDnsName: Text,
    firstSeen: Nullable(WireTime),
    lastSeen: Nullable(WireTime),
    osPlatform: Nullable(Text),
    osVersion: Nullable(Text),
    osProcessor: Nullable(Text),
    version: Nullable(Text),
    osBuild: Nullable(Type.Integer()),
    lastIpAddress: Nullable(Text),
    lastExternalIpAddress: Nullable(Text),
    agentVersion: Nullable(Text),
    osArchitecture: Nullable(Text),
    healthStatus: Type.Enum(HEALTH_STATUSES),
    defenderAvStatus: Nullable(Text),
    onboardingStatus: Nullable(Text),
    deviceValue: Nullable(Text),
    rbacGroupId: Nullable(Type.Integer()),
    rbacGroupName: Nullable(Text),
    riskScore: Nullable(Text),
    exposureLevel: Nullable(Text),
    isAadJoined: Type.Boolean(),
    aadDeviceId: Nullable(Guid),
    machineTags: Type.Array(Text),
    ipAddresses: Type.Array(IpAddress),
  },
  { title: 'Machine', description: 'A machine (contract §9). Its isolation state is that of its newest Isolate or Unisolate action.' },
);

/** Contract §2 row 21, §10. */
export const Investigation = Type.Object(
  {
    id: Type.String({ pattern: '^[0-9]+$', description: 'A number, shown as a string.' }),
    startTime: WireTime,
    endTime: Nullable(WireTime),
    state: Type.Enum(INVESTIGATION_STATES),
    cancelledBy: Nullable(Text),
    statusDetails: Nullable(Text),
    machineId: MachineId,
    computerDnsName: Nullable(Text),
    triggeringAlertId: Nullable(Text),
  },
  { title: 'Investigation', description: "An automated investigation: it collects the machine's investigation package." },
);

/** Contract §2 rows 17-19: an item of the live-response library. */
export const LibraryFile = Type.Object(
  {
    fileName: Text,
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    description: Nullable(Text),
    creationTime: WireTime,
    lastUpdatedTime: WireTime,
    createdBy: Nullable(Text),
    hasParameters: Type.Boolean(),
    parametersDescription: Nullable(Text),
  },
  { title: 'LibraryFile', description: 'A file in the tenant\'s live-response library, for PutFile and RunScript.' },
);

/** The multipart form of POST /api/libraryfiles (field names match in any case). */
export const LibraryUploadForm = Type.Object({
  File: Type.String({ format: 'binary', description: 'The file, at most 20 MB (20,971,520 bytes); its file name is the library name.' }),
  Description: Type.Optional(Type.String({ maxLength: 4096 })),
  ParametersDescription: Type.Optional(Type.String({ maxLength: 4096 })),
  HasParameters: Type.Optional(Type.Boolean()),
  OverrideIfExists: Type.Optional(Type.Boolean({ description: 'Replace a file of the same name (in any case); else 400.' })),
});

export const AlertEvidence = Type.Object(
  {
    entityType: Type.Enum(['File', 'Process']),
    evidenceCreationTime: WireTime,
    sha1: Nullable(Text),
    sha256: Nullable(Text),
    fileName: Nullable(Text),
    filePath: Nullable(Text),
    processId: Nullable(Type.Integer()),
    processCommandLine: Nullable(Text),
    processCreationTime: Nullable(WireTime),
    parentProcessId: Nullable(Type.Integer()),
    parentProcessCreationTime: Nullable(WireTime),
    parentProcessFileName: Nullable(Text),
    parentProcessFilePath: Nullable(Text),
    ipAddress: Nullable(Text),
    url: Nullable(Text),
    registryKey: Nullable(Text),
    registryHive: Nullable(Text),
    registryValueType: Nullable(Text),
    registryValue: Nullable(Text),
    accountName: Nullable(Text),
    domainName: Nullable(Text),
    userSid: Nullable(Text),
    aadUserId: Nullable(Text),
    userPrincipalName: Nullable(Text),
    detectionStatus: Nullable(Type.Enum(['Detected', 'Blocked'])),
  },
  { title: 'AlertEvidence' },
);

export const AlertComment = Type.Object({ comment: Text, createdBy: Text, createdTime: WireTime }, { title: 'AlertComment' });
export const RelatedUser = Type.Object({ userName: Text, domainName: Text }, { title: 'RelatedUser' });

/** Contract §10. */
export const Alert = Type.Object(
  {
    id: Type.String({ examples: ['da637472900382838869_1364969609'] }),
    incidentId: Nullable(Type.Integer()),
    investigationId: Nullable(Type.Integer()),
    assignedTo: Nullable(Text),
    severity: Type.Enum(ALERT_SEVERITIES),
    status: Type.Enum(ALERT_STATUSES),
    classification: Nullable(Text),
    determination: Nullable(Text),
    investigationState: Nullable(Type.Enum(INVESTIGATION_STATES)),
    detectionSource: Text,
    detectorId: Text,
    category: Text,
    threatFamilyName: Nullable(Text),
    title: Text,
    description: Text,
    alertCreationTime: WireTime,
    firstEventTime: Nullable(WireTime),
    lastEventTime: Nullable(WireTime),
    lastUpdateTime: WireTime,
    resolvedTime: Nullable(WireTime),
    machineId: MachineId,
    computerDnsName: Nullable(Text),
    rbacGroupName: Nullable(Text),
    aadTenantId: Guid,
    threatName: Nullable(Text),
    mitreTechniques: Type.Array(Text),
    relatedUser: Nullable(RelatedUser),
    comments: Type.Array(AlertComment),
    evidence: Type.Array(AlertEvidence, { description: 'Listed in collections only with $expand=evidence; a single alert always has it.' }),
  },
  { title: 'Alert', description: 'An alert raised from what an agent found (contract §10).' },
);

/** Contract §6. */
export const ErrorEnvelope = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ examples: ['NotFound'] }),
      message: Text,
      target: Type.String({ description: 'The request id: the same as the request-id response header.' }),
    }),
  },
  { title: 'Error', description: 'Every error answer of the API (contract §6).' },
);

/** `@odata.context`: `<base>/api/$metadata#<set>`, parsed by clients only as a string. */
const context = (fragment: string) =>
  Type.String({ format: 'uri', description: `<base>/api/$metadata#${fragment}`, examples: [`http://127.0.0.1:8080/api/$metadata#${fragment}`] });

/** A single entity: its `@odata.context` first, then the entity's fields (contract §3). */
export function entityOf(set: string, entity: TObject): TSchema {
  return Type.Intersect([Type.Object({ '@odata.context': context(`${set}/$entity`) }), entity]);
}

/** A collection: context, `@odata.count` with `$count=true`, the page, and a next link without `$top`. */
export function collectionOf(set: string, entity: TObject): TSchema {
  return Type.Object({
    '@odata.context': context(set),
    '@odata.count': Type.Optional(Type.Integer({ minimum: 0, description: 'With $count=true: every match, not only this page.' })),
    value: Type.Array(entity),
    '@odata.nextLink': Type.Optional(Type.String({ format: 'uri', description: 'Without $top, when more rows match than the page holds: the same query with $skip moved on.' })),
  });
}

/** A download link (contract §2 rows 8, 14): the URL carries its own credential. */
export const LinkResponse = Type.Object({
  '@odata.context': context('Edm.String'),
  value: Type.String({ format: 'uri', description: 'Download it without an Authorization header; it expires.' }),
});

/** Path parameters. */
export const MachineKeyParams = Type.Object({
  id: Type.String({ description: "The machine's id (40 hex characters) or aadDeviceId; reads also take its computerDnsName." }),
});
export const ActionIdParams = Type.Object({ id: Type.String({ format: 'uuid', description: "The action's id (Edm.Guid)." }) });
export const AlertIdParams = Type.Object({ id: Type.String({ description: "The alert's id." }) });
export const InvestigationIdParams = Type.Object({ id: Type.String({ description: "The investigation's id (a number)." }) });

export const LibraryFileNameParams = Type.Object({ fileName: Type.String({ description: 'The library file name (in any case), percent-encoded.' }) });
export const ResultIndexParams = Type.Object({
  id: Type.String({ format: 'uuid', description: "The action's id (Edm.Guid)." }),
  index: Type.Integer({ minimum: 0, description: 'The index of a completed RunScript or GetFile command.' }),
});
/** A signed download link's own credential (docs/artifacts.md, "Download links"). */
export const SignedLinkQuery = Type.Object({
  expires: Type.Integer({ description: 'Epoch seconds after which the link is refused.' }),
  sig: Type.String({ description: 'The signature over what the link names and its expiry.' }),
});

/** The OData query options a collection takes (contract §5), naming the set's properties. */
export function odataQuery(set: EntitySetDef): TObject {
  const filterable = set.properties.filter((p) => !p.orderOnly).map((p) => p.name);
  const orderable = set.properties.map((p) => p.name);
  return Type.Object({
    $filter: Type.Optional(
      Type.String({
        description:
          `eq, ne, gt, ge, lt, le, and, or, not, in (...), startswith(prop,'x') over ${filterable.join(', ')} ` +
          '(names and keywords in any case; strings in single quotes, dates unquoted ISO 8601).',
        examples: [set.name === 'MachineActions' ? "status eq 'Pending' and type in ('Isolate','Unisolate')" : `${filterable[0]} eq 'x'`],
      }),
    ),
    $top: Type.Optional(Type.Integer({ minimum: 0, maximum: set.maxTop, description: `At most ${set.maxTop}; with $top there is no @odata.nextLink.` })),
    $skip: Type.Optional(Type.Integer({ minimum: 0 })),
    $orderby: Type.Optional(Type.String({ description: `<property> [asc|desc], over ${orderable.join(', ')}. Default: newest first.` })),
    $count: Type.Optional(Type.Boolean({ description: 'true adds @odata.count.' })),
    ...((set.expand ?? []).length > 0
      ? { $expand: Type.Optional(Type.String({ description: `Navigation properties to include: ${(set.expand ?? []).join(', ')}.` })) }
      : {}),
  });
}

import { ACTION_STATUSES, ACTION_TYPES } from '../../src/domain/model.js';
import { defineEntitySet, type EntitySetDef } from '../../src/odata/index.js';

/**
 * The entity set the OData unit tests use: machine actions as the API has them, plus a number
 * and a tags property so every property type is exercised.
 */
export const STATUSES = ACTION_STATUSES;
export const TYPES = ACTION_TYPES;
export const TAGS_SQL = 'EXISTS (SELECT 1 FROM action_tags g WHERE g.rid = a.rid AND g.tag = ?)';

export const SET: EntitySetDef = defineEntitySet({
  name: 'MachineActions',
  maxTop: 10000,
  properties: [
    { name: 'id', type: 'guid', column: 'a.id' },
    { name: 'status', type: 'enum', column: 'a.status', enumValues: STATUSES },
    { name: 'machineId', type: 'string', column: 'a.machine_id' },
    { name: 'type', type: 'enum', column: 'a.type', enumValues: TYPES },
    { name: 'requestor', type: 'string', column: 'a.requestor' },
    { name: 'creationDateTimeUtc', type: 'datetime', column: 'a.created_at' },
    { name: 'riskScore', type: 'number', column: 'a.risk_score' },
    { name: 'machineTags', type: 'tags', column: '', existsSql: TAGS_SQL },
  ],
});

import { Type } from 'typebox';
import { TAGS } from '../../../route-docs.js';
import { csdlDocument } from '../../metadata.js';
import type { Operation } from '../../operation.js';

export const CSDL_XML = 'application/xml; charset=utf-8';

/**
 * GET /api/$metadata: the CSDL document `@odata.context` points at (docs/api-decisions.md).
 * Any valid token may read it: it describes the service, not a tenant's data.
 */
export const getMetadata: Operation = {
  name: 'GetMetadata',
  method: 'GET',
  path: '/$metadata',
  permissions: null,
  doc: {
    tag: TAGS.metadata,
    summary: 'The OData service metadata (CSDL)',
    description:
      'OData 4.0 EDMX: the entity types and sets (MachineActions, Machines, Alerts, Investigations) with their properties and keys, ' +
      'and the actions bound to them. Any valid token may read it.',
    response: { status: 200, description: 'The CSDL document.', schema: Type.String({ contentMediaType: 'application/xml' }), contentType: CSDL_XML },
  },
  async handler() {
    return { status: 200, body: null, payload: csdlDocument(), contentType: CSDL_XML };
  },
};

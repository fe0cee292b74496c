import { MANAGE_LIBRARY } from '../../../domain/permissions.js';
import { LIBRARY_FILE_SET } from '../../../domain/query-sets.js';
import { collectionBody, parseCollectionQuery } from '../../collection.js';
import type { Operation } from '../../operation.js';
import { libraryFileToWire } from '../../wire.js';
import { TAGS } from '../../../route-docs.js';
import { LibraryFile, collectionOf, odataQuery } from '../../wire-schemas.js';

/** GET /api/libraryfiles (contract §2 row 17): the tenant's live-response library. */
export const listLibraryFiles: Operation = {
  name: 'ListLibraryFiles',
  method: 'GET',
  path: '/libraryfiles',
  permissions: MANAGE_LIBRARY,
  doc: {
    tag: TAGS.library,
    summary: 'List the library files',
    description: 'Ordered by name unless $orderby says otherwise.',
    query: odataQuery(LIBRARY_FILE_SET),
    response: { status: 200, description: "A page of the tenant's library.", schema: collectionOf('LibraryFiles', LibraryFile) },
  },
  async handler(request, ctx) {
    const { odata, query } = parseCollectionQuery(request, LIBRARY_FILE_SET, ctx);
    const page = await ctx.library.list(request.caller, query);
    return {
      status: 200,
      body: collectionBody(request, ctx, { name: 'LibraryFiles', path: 'libraryfiles' }, odata, page, libraryFileToWire),
    };
  },
};

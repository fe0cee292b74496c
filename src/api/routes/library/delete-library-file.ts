import { MANAGE_LIBRARY } from '../../../domain/permissions.js';
import type { Operation } from '../../operation.js';
import { TAGS } from '../../../route-docs.js';
import { LibraryFileNameParams } from '../../wire-schemas.js';

/** DELETE /api/libraryfiles/{fileName} (contract §2 row 19): 204, or 404 for an unknown name. */
export const deleteLibraryFile: Operation = {
  name: 'DeleteLibraryFile',
  method: 'DELETE',
  path: '/libraryfiles/:fileName',
  permissions: MANAGE_LIBRARY,
  doc: {
    tag: TAGS.library,
    summary: 'Delete a library file',
    description: 'The name matches in any case; an unknown name is 404 NotFound.',
    params: LibraryFileNameParams,
    response: { status: 204, description: 'Deleted.' },
  },
  async handler(request, ctx) {
    const { fileName } = request.params as { fileName: string };
    await ctx.library.delete(request.caller, fileName);
    return { status: 204 };
  },
};

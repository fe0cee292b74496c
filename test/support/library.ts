import type { Client, HttpResult } from './harness.js';

/** Uploads a library file as MDE clients do: multipart/form-data with `File` and the optional fields. */
export function uploadLibraryFile(
  api: Client,
  fileName: string,
  content: string | Uint8Array,
  fields: { Description?: string; ParametersDescription?: string; HasParameters?: string; OverrideIfExists?: string } = {},
): Promise<HttpResult> {
  const form = new FormData();
  form.append('File', new Blob([content]), fileName);
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) form.append(key, value);
  return api.postForm('/api/libraryfiles', form);
}

/** Uploads and insists it worked (test setup). */
export async function ensureLibraryFile(api: Client, fileName: string, content: string | Uint8Array = `#!/bin/sh\necho ${fileName}\n`): Promise<void> {
  const res = await uploadLibraryFile(api, fileName, content, { OverrideIfExists: 'true' });
  if (res.status !== 200) throw new Error(`could not upload ${fileName}: ${res.status} ${res.text}`);
}

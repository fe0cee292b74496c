import type { FastifyRequest } from 'fastify';
import { parseQueryOptions, type EntitySetDef, type ODataQuery } from '../odata/index.js';
import type { Page } from '../domain/store.js';
import { collectionContext } from './wire.js';
import type { ApiContext } from './operation.js';

/** The query string exactly as the client sent it (OData needs `+` and `%2B` told apart). */
export function rawQueryString(request: FastifyRequest): string {
  const url = request.raw.url ?? '';
  const q = url.indexOf('?');
  return q === -1 ? '' : url.slice(q + 1);
}

export function parseCollectionQuery(request: FastifyRequest, set: EntitySetDef, ctx: ApiContext) {
  const odata = parseQueryOptions(rawQueryString(request), set);
  return {
    odata,
    query: {
      filter: odata.filter,
      orderBy: odata.orderBy,
      top: odata.top ?? ctx.pageSize,
      skip: odata.skip,
      count: odata.count,
    },
  };
}

/**
 * A collection response (contract §3, §5). With $top there is never a nextLink; without it, a
 * page that leaves rows behind links to the same query with $skip moved on.
 */
export function collectionBody<T>(
  request: FastifyRequest,
  ctx: ApiContext,
  set: { name: string; path: string },
  odata: ODataQuery,
  page: Page<T>,
  toWire: (item: T) => unknown,
) {
  const body: Record<string, unknown> = { '@odata.context': collectionContext(ctx.baseUrl(), set.name) };
  if (odata.count) body['@odata.count'] = page.count;
  body.value = page.items.map(toWire);
  if (odata.top === undefined && page.hasMore) {
    const kept = rawQueryString(request)
      .split('&')
      .filter((part) => part !== '' && !/^(\$|%24)skip=/i.test(part));
    kept.push(`$skip=${odata.skip + page.items.length}`);
    body['@odata.nextLink'] = `${ctx.baseUrl()}/api/${set.path}?${kept.join('&')}`;
  }
  return body;
}

import { useEffect, useRef, useState } from 'preact/hooks';
import { odataQuery, odataString, type Collection } from '../api.js';
import { ACTION_SORTS, ActionsTable } from '../components/ActionsTable.js';
import { CancelDialog, CancelOutcomeNote, type CancelOutcome } from '../components/CancelDialog.js';
import { ErrorNote, Loading, Pager, type Sort } from '../components/ui.js';
import { href, useApp, useLive, useLoad, useThrottled, type Route } from '../context.js';
import { useI18n, type MessageKey } from '../i18n.js';
import { ACTION_STATUSES, ACTION_TYPES, can, later, type Machine, type MachineAction } from '../model.js';

export const PAGE_SIZE = 25;
/** Re-reads prompted by live changes: at most one per this, within the API's rate limits. */
export const LIVE_RELOAD_MS = 1500;

const FILTER_KEYS = ['status', 'type', 'machine', 'requestor', 'from', 'to'] as const;
type Filters = Record<(typeof FILTER_KEYS)[number], string>;

const SORT_LABELS: Record<(typeof ACTION_SORTS)[number], MessageKey> = {
  creationDateTimeUtc: 'actions.col.created',
  type: 'actions.col.type',
  status: 'actions.col.status',
  computerDnsName: 'actions.col.machine',
  requestor: 'actions.col.requestor',
  lastUpdateDateTimeUtc: 'actions.col.updated',
};

/** `datetime-local` is the browser's local time; OData wants UTC. */
const toUtc = (local: string) => {
  const ms = Date.parse(local);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
};

/** The list's OData query: each filter a clause, as the API's $filter takes them (contract §5). */
export function actionFilter(filters: Partial<Filters>): string[] {
  const clauses: string[] = [];
  if (filters.status) clauses.push(`status eq ${odataString(filters.status)}`);
  if (filters.type) clauses.push(`type eq ${odataString(filters.type)}`);
  if (filters.machine) clauses.push(`machineId eq ${odataString(filters.machine)}`);
  if (filters.requestor) clauses.push(`startswith(requestor,${odataString(filters.requestor)})`);
  const from = filters.from ? toUtc(filters.from) : null;
  const to = filters.to ? toUtc(filters.to) : null;
  if (from) clauses.push(`creationDateTimeUtc ge ${from}`);
  if (to) clauses.push(`creationDateTimeUtc le ${to}`);
  return clauses;
}

function readSort(params: URLSearchParams): Sort {
  const property = params.get('sort') ?? 'creationDateTimeUtc';
  return {
    property: (ACTION_SORTS as readonly string[]).includes(property) ? property : 'creationDateTimeUtc',
    descending: params.get('dir') !== 'asc',
  };
}

export function ActionsPage({ route }: { route: Route }) {
  const { api, session } = useApp();
  const { t } = useI18n();
  const params = route.params;
  const applied = Object.fromEntries(FILTER_KEYS.map((k) => [k, params.get(k) ?? ''])) as Filters;
  const sort = readSort(params);
  const skip = Math.max(0, Number(params.get('skip')) || 0);
  const [draft, setDraft] = useState<Filters>(applied);
  const paramsKey = params.toString();
  useEffect(() => setDraft(applied), [paramsKey]);

  const go = (changes: Record<string, string | null>) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    location.hash = href('actions', next);
  };

  const query = odataQuery({
    filter: actionFilter(applied),
    orderBy: `${sort.property} ${sort.descending ? 'desc' : 'asc'}`,
    top: PAGE_SIZE,
    skip,
    count: true,
  });
  const list = useLoad(() => api.get<Collection<MachineAction>>(`/api/machineactions${query}`), query);
  const machines = useLoad(() => api.get<Collection<Machine>>(`/api/machines${odataQuery({ top: 1000, orderBy: 'computerDnsName asc' })}`), 'machines');
  // What the stream (or a cancel) said of rows on this page since they were read; the newer of
  // the two versions of a row is shown, so a re-read never rolls a live change back.
  const [live, setLive] = useState<ReadonlyMap<string, MachineAction>>(new Map());
  const [cancelling, setCancelling] = useState<MachineAction | null>(null);
  const [outcome, setOutcome] = useState<CancelOutcome | null>(null);
  const rows = (list.data?.value ?? []).map((row) => {
    const changed = live.get(row.id);
    return changed ? later(row, changed) : row;
  });
  const rowsRef = useRef(rows);
  rowsRef.current = rows;
  const update = (action: MachineAction) => setLive((current) => new Map(current).set(action.id, action));
  // Only rows still on the page are worth remembering.
  useEffect(() => {
    const ids = new Set((list.data?.value ?? []).map((row) => row.id));
    setLive((current) => new Map([...current].filter(([id]) => ids.has(id))));
  }, [list.data]);

  const reload = useThrottled(list.reload, LIVE_RELOAD_MS);
  const filtered = actionFilter(applied).length > 0;
  useLive({
    change: (change, action) => {
      const shown = rowsRef.current.some((row) => row.id === action.id);
      if (shown) update(action);
      // A new action, or one whose change may move it in or out of the filtered, sorted page.
      if (change === 'created' || !shown || filtered || sort.property !== 'creationDateTimeUtc') reload();
    },
    resync: list.reload,
  });

  if (!can.read(session)) {
    return (
      <section aria-labelledby="page-title">
        <h1 id="page-title">{t('actions.title')}</h1>
        <p class="note">{t('actions.noRead')}</p>
      </section>
    );
  }

  const order =
    sort.property === 'creationDateTimeUtc' && sort.descending
      ? t('actions.newest')
      : t('actions.sortedBy', { column: t(SORT_LABELS[sort.property as (typeof ACTION_SORTS)[number]]), direction: t(sort.descending ? 'common.descending' : 'common.ascending') });

  return (
    <section aria-labelledby="page-title">
      <h1 id="page-title">{t('actions.title')}</h1>
      <form
        class="filters"
        aria-label={t('actions.filters')}
        onSubmit={(e) => {
          e.preventDefault();
          go({ ...draft, skip: null });
        }}
      >
        <div class="field">
          <label for="f-status">{t('actions.status')}</label>
          <select id="f-status" value={draft.status} onChange={(e) => setDraft({ ...draft, status: e.currentTarget.value })}>
            <option value="">{t('common.any')}</option>
            {ACTION_STATUSES.map((s) => (
              <option value={s}>{t(`status.${s}`)}</option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="f-type">{t('actions.type')}</label>
          <select id="f-type" value={draft.type} onChange={(e) => setDraft({ ...draft, type: e.currentTarget.value })}>
            <option value="">{t('common.any')}</option>
            {ACTION_TYPES.map((type) => (
              <option value={type}>{t(`type.${type}`)}</option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="f-machine">{t('actions.machine')}</label>
          <select id="f-machine" value={draft.machine} onChange={(e) => setDraft({ ...draft, machine: e.currentTarget.value })}>
            <option value="">{t('common.any')}</option>
            {(machines.data?.value ?? []).map((m) => (
              <option value={m.id}>{m.computerDnsName}</option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="f-requestor">{t('actions.requestor')}</label>
          <input id="f-requestor" value={draft.requestor} onInput={(e) => setDraft({ ...draft, requestor: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="f-from">{t('actions.from')}</label>
          <input id="f-from" type="datetime-local" step={1} value={draft.from} onInput={(e) => setDraft({ ...draft, from: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="f-to">{t('actions.to')}</label>
          <input id="f-to" type="datetime-local" step={1} value={draft.to} onInput={(e) => setDraft({ ...draft, to: e.currentTarget.value })} />
        </div>
        <div class="buttons">
          <button type="submit" class="primary">
            {t('common.apply')}
          </button>
          <button type="button" onClick={() => (location.hash = href('actions'))}>
            {t('common.reset')}
          </button>
        </div>
      </form>
      <CancelOutcomeNote outcome={outcome} />
      <ErrorNote error={list.error} />
      {list.data === undefined && list.loading ? (
        <Loading />
      ) : (
        <>
          <ActionsTable
            busy={!list.current}
            actions={rows}
            sort={sort}
            onSort={(s) => go({ sort: s.property, dir: s.descending ? 'desc' : 'asc', skip: null })}
            caption={t('actions.caption', { order })}
            onCancel={can.cancel(session) ? setCancelling : undefined}
          />
          {list.current ? (
            <Pager skip={skip} top={PAGE_SIZE} total={list.data?.['@odata.count'] ?? rows.length} onPage={(s) => go({ skip: s ? String(s) : null })} />
          ) : (
            <Loading />
          )}
        </>
      )}
      {cancelling ? (
        <CancelDialog
          action={cancelling}
          onClose={() => setCancelling(null)}
          onDone={(result, now) => {
            setCancelling(null);
            setOutcome(result);
            update(now);
          }}
        />
      ) : null}
    </section>
  );
}

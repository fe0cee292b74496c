import { useEffect, useState } from 'preact/hooks';
import { odataQuery, odataString, type Collection } from '../api.js';
import { StateLabel, useMachineStates } from '../components/MachineState.js';
import { ErrorNote, HealthBadge, Loading, Pager, SortHeader, type Sort } from '../components/ui.js';
import { href, useApp, useLoad, type Route } from '../context.js';
import { useI18n, type MessageKey } from '../i18n.js';
import { ACTION_TYPES, HEALTH_STATUSES, can, type ActionType, type Machine } from '../model.js';
import { PAGE_SIZE } from './Actions.js';
import { StartDialog } from './Machine.js';

/** Sortable columns: properties $orderby accepts on machines (contract §5). */
const MACHINE_SORTS: Record<string, MessageKey> = {
  computerDnsName: 'machines.col.name',
  healthStatus: 'machines.col.health',
  lastSeen: 'machines.col.lastSeen',
  osPlatform: 'machines.col.os',
  rbacGroupId: 'machines.col.group',
  lastIpAddress: 'machines.col.ip',
};

export function MachinesPage({ route }: { route: Route }) {
  const { api, session } = useApp();
  const { t, relative, dateTime } = useI18n();
  const params = route.params;
  const name = params.get('name') ?? '';
  const health = params.get('health') ?? '';
  const skip = Math.max(0, Number(params.get('skip')) || 0);
  const sortProperty = params.get('sort') ?? 'computerDnsName';
  const sort: Sort = { property: sortProperty in MACHINE_SORTS ? sortProperty : 'computerDnsName', descending: params.get('dir') === 'desc' };
  const [draft, setDraft] = useState({ name, health });
  useEffect(() => setDraft({ name, health }), [name, health]);

  const go = (changes: Record<string, string | null>) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    location.hash = href('machines', next);
  };

  const filter: string[] = [];
  if (name) filter.push(`startswith(computerDnsName,${odataString(name)})`);
  if (health) filter.push(`healthStatus eq ${odataString(health)}`);
  const query = odataQuery({ filter, orderBy: `${sort.property} ${sort.descending ? 'desc' : 'asc'}`, top: PAGE_SIZE, skip, count: true });
  const list = useLoad(() => api.get<Collection<Machine>>(`/api/machines${query}`), query);
  const machines = list.data?.value ?? [];
  const { states } = useMachineStates(machines.map((m) => m.id));
  // Each row can start any action type the token may create, in the same dialog as the machine's page.
  const allowed = ACTION_TYPES.filter((type) => can.create(session, type));
  const [choice, setChoice] = useState<Record<string, ActionType>>({});
  const [starting, setStarting] = useState<{ machine: Machine; type: ActionType } | null>(null);

  if (!can.read(session)) {
    return (
      <section aria-labelledby="page-title">
        <h1 id="page-title">{t('machines.title')}</h1>
        <p class="note">{t('machines.noRead')}</p>
      </section>
    );
  }

  const order =
    sort.property === 'computerDnsName' && !sort.descending
      ? t('machines.byName')
      : t('actions.sortedBy', { column: t(MACHINE_SORTS[sort.property]!), direction: t(sort.descending ? 'common.descending' : 'common.ascending') });

  return (
    <section aria-labelledby="page-title">
      <h1 id="page-title">{t('machines.title')}</h1>
      <form
        class="filters"
        aria-label={t('actions.filters')}
        onSubmit={(e) => {
          e.preventDefault();
          go({ name: draft.name, health: draft.health, skip: null });
        }}
      >
        <div class="field">
          <label for="m-name">{t('machines.name')}</label>
          <input id="m-name" value={draft.name} onInput={(e) => setDraft({ ...draft, name: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="m-health">{t('machines.health')}</label>
          <select id="m-health" value={draft.health} onChange={(e) => setDraft({ ...draft, health: e.currentTarget.value })}>
            <option value="">{t('common.any')}</option>
            {HEALTH_STATUSES.map((h) => (
              <option value={h}>{t(`health.${h}`)}</option>
            ))}
          </select>
        </div>
        <div class="buttons">
          <button type="submit" class="primary">
            {t('common.apply')}
          </button>
          <button type="button" onClick={() => (location.hash = href('machines'))}>
            {t('common.reset')}
          </button>
          <button type="button" onClick={list.reload}>
            {t('common.refresh')}
          </button>
        </div>
      </form>
      <ErrorNote error={list.error} />
      {list.data === undefined && list.loading ? (
        <Loading />
      ) : (
        <>
          <div class="table-wrap">
            <table aria-busy={!list.current}>
              <caption class="visually-hidden">{t('machines.caption', { order })}</caption>
              <thead>
                <tr>
                  {(['computerDnsName', 'healthStatus', 'lastSeen', 'osPlatform', 'rbacGroupId', 'lastIpAddress'] as const).map((p) => (
                    <SortHeader label={t(MACHINE_SORTS[p]!)} property={p} sort={sort} onSort={(s) => go({ sort: s.property, dir: s.descending ? 'desc' : 'asc', skip: null })} />
                  ))}
                  <th scope="col">{t('machines.col.isolation')}</th>
                  <th scope="col">{t('machines.col.restriction')}</th>
                  {allowed.length > 0 ? <th scope="col">{t('machines.col.start')}</th> : null}
                </tr>
              </thead>
              <tbody>
                {machines.length === 0 ? (
                  <tr>
                    <td colSpan={allowed.length > 0 ? 9 : 8} class="muted">
                      {t('common.empty')}
                    </td>
                  </tr>
                ) : (
                  machines.map((m) => (
                    <tr key={m.id} data-machine-id={m.id}>
                      <td>
                        <a href={href(`machines/${m.id}`)}>{m.computerDnsName}</a>
                      </td>
                      <td>
                        <HealthBadge health={m.healthStatus} />
                      </td>
                      <td>
                        <time dateTime={m.lastSeen ?? undefined} title={dateTime(m.lastSeen)}>
                          {relative(m.lastSeen)}
                        </time>
                      </td>
                      <td>{m.osPlatform ?? t('common.none')}</td>
                      <td>{m.rbacGroupName ?? (m.rbacGroupId === null ? t('common.none') : String(m.rbacGroupId))}</td>
                      <td>{m.lastIpAddress ?? t('common.none')}</td>
                      <td data-column="isolation">
                        <StateLabel state={states?.get(m.id)?.isolation} kind="isolation" />
                      </td>
                      <td data-column="restriction">
                        <StateLabel state={states?.get(m.id)?.restriction} kind="restriction" />
                      </td>
                      {allowed.length > 0 ? (
                        <td>
                          <div class="start-cell">
                            <label class="visually-hidden" for={`start-${m.id}`}>
                              {t('machines.startType', { machine: m.computerDnsName })}
                            </label>
                            <select
                              id={`start-${m.id}`}
                              value={choice[m.id] ?? allowed[0]}
                              onChange={(e) => setChoice({ ...choice, [m.id]: e.currentTarget.value as ActionType })}
                            >
                              {allowed.map((type) => (
                                <option value={type}>{t(`type.${type}`)}</option>
                              ))}
                            </select>
                            <button type="button" class="small" onClick={() => setStarting({ machine: m, type: choice[m.id] ?? allowed[0]! })}>
                              {t('machines.startShort')}
                              <span class="visually-hidden"> {t('machines.startOn', { machine: m.computerDnsName })}</span>
                            </button>
                          </div>
                        </td>
                      ) : null}
                    </tr>
                  ))
                )}
              </tbody>
            </table>
          </div>
          {list.current ? (
            <Pager skip={skip} top={PAGE_SIZE} total={list.data?.['@odata.count'] ?? machines.length} onPage={(s) => go({ skip: s ? String(s) : null })} />
          ) : (
            <Loading />
          )}
        </>
      )}
      {starting ? <StartDialog machine={starting.machine} type={starting.type} onClose={() => setStarting(null)} /> : null}
    </section>
  );
}

import { odataQuery, odataString, type Collection } from '../api.js';
import { useApp, useLive, useLoad, useThrottled } from '../context.js';
import { useI18n } from '../i18n.js';
import { STATE_GROUPS, deriveState, type DerivedState, type MachineAction } from '../model.js';

const STATE_TYPES: readonly string[] = Object.values(STATE_GROUPS).flatMap((g) => [g.on, g.off]);

export interface MachineStates {
  isolation: DerivedState;
  restriction: DerivedState;
}

/**
 * Isolation and restriction of the given machines, derived from their newest actions through
 * the public OData API (contract §9): one query for the whole page, newest first, re-read when
 * the stream reports a change of one of those actions.
 */
export function useMachineStates(machineIds: readonly string[]): { states: Map<string, MachineStates> | undefined; reload(): void } {
  const { api } = useApp();
  const key = machineIds.join(',');
  const query = odataQuery({
    filter: [
      `machineId in (${machineIds.map(odataString).join(',')})`,
      `type in (${STATE_TYPES.map(odataString).join(',')})`,
      `status in ('Succeeded','Pending','InProgress')`,
    ],
    orderBy: 'creationDateTimeUtc desc',
    top: 10000,
  });
  const loaded = useLoad(
    () => (machineIds.length === 0 ? Promise.resolve({ value: [] }) : api.get<Collection<MachineAction>>(`/api/machineactions${query}`)),
    key,
  );
  const reload = useThrottled(loaded.reload, 1000);
  useLive({
    change: (_change, action) => {
      if (STATE_TYPES.includes(action.type) && machineIds.includes(action.machineId)) reload();
    },
    resync: loaded.reload,
  });
  if (!loaded.data) return { states: undefined, reload: loaded.reload };
  const states = new Map<string, MachineStates>();
  for (const id of machineIds) {
    const mine = loaded.data.value.filter((a) => a.machineId === id);
    states.set(id, {
      isolation: deriveState(
        mine.filter((a) => a.type === STATE_GROUPS.isolation.on || a.type === STATE_GROUPS.isolation.off),
        STATE_GROUPS.isolation,
      ),
      restriction: deriveState(
        mine.filter((a) => a.type === STATE_GROUPS.restriction.on || a.type === STATE_GROUPS.restriction.off),
        STATE_GROUPS.restriction,
      ),
    });
  }
  return { states, reload: loaded.reload };
}

export function StateLabel({ state, kind }: { state: DerivedState | undefined; kind: 'isolation' | 'restriction' }) {
  const { t } = useI18n();
  if (!state) return <span class="muted">{t('common.loading')}</span>;
  const label =
    state.on === null
      ? t('state.unknown')
      : kind === 'isolation'
        ? state.on
          ? t('state.isolated', { scope: state.scope ?? 'Full' })
          : t('state.notIsolated')
        : state.on
          ? t('state.restricted')
          : t('state.notRestricted');
  return (
    <span class={`state ${state.on ? 'state-on' : 'state-off'}`} data-state={state.on === null ? 'unknown' : state.on ? 'on' : 'off'}>
      {label}
      {state.pending ? (
        <span class="state-pending">
          {' · '}
          {t('state.pending', { type: t(`type.${state.pending.type}`), status: t(`status.${state.pending.status}`) })}
        </span>
      ) : null}
    </span>
  );
}

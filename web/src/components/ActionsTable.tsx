import { useI18n } from '../i18n.js';
import { href } from '../context.js';
import { isFinal, type MachineAction } from '../model.js';
import { SortHeader, StatusBadge, type Sort } from './ui.js';

/** The sortable columns: $orderby takes every scalar property of a machine action (contract §5). */
export const ACTION_SORTS = ['creationDateTimeUtc', 'type', 'status', 'computerDnsName', 'requestor', 'lastUpdateDateTimeUtc'] as const;

export function ActionsTable({
  actions,
  sort,
  onSort,
  caption,
  showMachine = true,
  onCancel,
  busy = false,
}: {
  actions: readonly MachineAction[];
  sort: Sort;
  onSort(sort: Sort): void;
  caption: string;
  showMachine?: boolean;
  /** Offers Cancel on each action that is not final (the caller may cancel). */
  onCancel?: ((action: MachineAction) => void) | undefined;
  /** Rows of an earlier query are shown while the new one loads. */
  busy?: boolean;
}) {
  const { t, dateTime } = useI18n();
  const columns = (showMachine ? 7 : 6) + (onCancel ? 1 : 0);
  return (
    <div class="table-wrap">
      <table aria-busy={busy}>
        <caption class="visually-hidden">{caption}</caption>
        <thead>
          <tr>
            <SortHeader label={t('actions.col.created')} property="creationDateTimeUtc" sort={sort} onSort={onSort} />
            <SortHeader label={t('actions.col.type')} property="type" sort={sort} onSort={onSort} />
            <SortHeader label={t('actions.col.status')} property="status" sort={sort} onSort={onSort} />
            {showMachine ? <SortHeader label={t('actions.col.machine')} property="computerDnsName" sort={sort} onSort={onSort} /> : null}
            <SortHeader label={t('actions.col.requestor')} property="requestor" sort={sort} onSort={onSort} />
            <th scope="col">{t('actions.col.comment')}</th>
            <SortHeader label={t('actions.col.updated')} property="lastUpdateDateTimeUtc" sort={sort} onSort={onSort} />
            {onCancel ? (
              <th scope="col">
                <span class="visually-hidden">{t('actions.col.cancel')}</span>
              </th>
            ) : null}
          </tr>
        </thead>
        <tbody>
          {actions.length === 0 ? (
            <tr>
              <td colSpan={columns} class="muted">
                {t('common.empty')}
              </td>
            </tr>
          ) : (
            actions.map((a) => (
              <tr key={a.id} data-action-id={a.id}>
                <td>{dateTime(a.creationDateTimeUtc)}</td>
                <td>
                  <a href={href(`actions/${a.id}`)}>{t(`type.${a.type}`)}</a>
                </td>
                <td>
                  <StatusBadge status={a.status} />
                </td>
                {showMachine ? (
                  <td>
                    <a href={href(`machines/${a.machineId}`)}>{a.computerDnsName ?? a.machineId}</a>
                  </td>
                ) : null}
                <td>{a.requestor}</td>
                <td class="comment">{a.requestorComment ?? t('common.none')}</td>
                <td>{dateTime(a.lastUpdateDateTimeUtc)}</td>
                {onCancel ? (
                  <td>
                    {isFinal(a.status) ? null : (
                      <button type="button" class="small" onClick={() => onCancel(a)}>
                        {t('actions.cancelShort')}
                        <span class="visually-hidden"> {t('actions.cancelRow', { type: t(`type.${a.type}`), machine: a.computerDnsName ?? a.machineId })}</span>
                      </button>
                    )}
                  </td>
                ) : null}
              </tr>
            ))
          )}
        </tbody>
      </table>
    </div>
  );
}

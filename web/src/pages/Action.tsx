import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, EXTENSIONS } from '../api.js';
import { CancelDialog, CancelOutcomeNote, type CancelOutcome } from '../components/CancelDialog.js';
import { ErrorNote, Loading, Row, StatusBadge, describeError, safeLink } from '../components/ui.js';
import { href, useApp, useLive, useLoad, useThrottled } from '../context.js';
import { useI18n } from '../i18n.js';
import { can, isFinal, later, type CommandWire, type HistoryEntry, type MachineAction } from '../model.js';


/** An action's page: its fields, live status, history timeline, commands and links, and Cancel. */
export function ActionPage({ id }: { id: string }) {
  const { api, session, announce } = useApp();
  const { t, dateTime } = useI18n();
  const loaded = useLoad(() => api.get<MachineAction>(`/api/machineactions/${encodeURIComponent(id)}`), id);
  const history = useLoad(() => api.get<{ value: HistoryEntry[] }>(`${EXTENSIONS}/machineactions/${encodeURIComponent(id)}/events`), id);
  const [action, setAction] = useState<MachineAction | undefined>(undefined);
  const actionRef = useRef(action);
  actionRef.current = action;
  const [cancelling, setCancelling] = useState(false);
  const [outcome, setOutcome] = useState<CancelOutcome | null>(null);
  useEffect(() => {
    const read = loaded.data;
    if (read) setAction((current) => later(current, read));
  }, [loaded.data]);
  useEffect(() => setOutcome(null), [id]);

  const reloadHistory = useThrottled(history.reload, 300);
  useLive({
    change: (_change, changed) => {
      if (changed.id !== id) return;
      if (actionRef.current && actionRef.current.status !== changed.status) announce(t('action.statusNow', { status: t(`status.${changed.status}`) }));
      setAction((current) => later(current, changed));
      reloadHistory();
    },
    resync: () => {
      loaded.reload();
      history.reload();
    },
  });

  if (loaded.error instanceof ApiError && loaded.error.status === 404) {
    return (
      <section aria-labelledby="page-title">
        <h1 id="page-title">{t('action.notFound')}</h1>
        <p>
          <a href={href('actions')}>{t('action.back')}</a>
        </p>
      </section>
    );
  }
  if (!action) return loaded.error ? <ErrorNote error={loaded.error} /> : <Loading />;

  const machine = action.computerDnsName ?? action.machineId;
  const type = t(`type.${action.type}`);
  return (
    <section aria-labelledby="page-title">
      <p>
        <a href={href('actions')}>{t('action.back')}</a>
      </p>
      <h1 id="page-title">{t('action.title', { type, machine })}</h1>
      <div class="status-line">
        <span id="action-status" data-status={action.status}>
          <StatusBadge status={action.status} />
        </span>
        {!isFinal(action.status) && can.cancel(session) ? (
          <button type="button" id="cancel-open" class="danger" onClick={() => setCancelling(true)}>
            {t('action.cancel')}
          </button>
        ) : null}
      </div>
      <CancelOutcomeNote outcome={outcome} />
      <h2>{t('action.summary')}</h2>
      <dl class="details">
        <Row label={t('action.id')}>
          <code>{action.id}</code>
        </Row>
        <Row label={t('action.type')}>{type}</Row>
        <Row label={t('action.machine')}>
          <a href={href(`machines/${action.machineId}`)}>{machine}</a>
        </Row>
        <Row label={t('action.requestor')}>{action.requestor}</Row>
        <Row label={t('action.comment')}>{action.requestorComment}</Row>
        <Row label={t('action.created')}>{dateTime(action.creationDateTimeUtc)}</Row>
        <Row label={t('action.updated')}>{dateTime(action.lastUpdateDateTimeUtc)}</Row>
        {action.scope ? <Row label={t('action.scope')}>{action.scope}</Row> : null}
        {action.relatedFileInfo ? (
          <Row label={t('action.file')}>
            <code>{action.relatedFileInfo.fileIdentifier}</code>
          </Row>
        ) : null}
        {action.errorHResult !== 0 ? <Row label={t('action.errorHResult')}>{String(action.errorHResult)}</Row> : null}
        {action.troubleshootInfo ? <Row label={t('action.troubleshoot')}>{action.troubleshootInfo}</Row> : null}
        {action.cancellationRequestor ? (
          <>
            <Row label={t('action.cancelledBy')}>{action.cancellationRequestor}</Row>
            <Row label={t('action.cancelledAt')}>{dateTime(action.cancellationDateTimeUtc)}</Row>
            <Row label={t('action.cancelComment')}>{action.cancellationComment}</Row>
          </>
        ) : null}
      </dl>
      {action.type === 'LiveResponse' ? <Commands action={action} /> : null}
      {action.type === 'CollectInvestigationPackage' ? <PackageLink action={action} /> : null}
      <h2>{t('action.history')}</h2>
      <ErrorNote error={history.error} />
      {history.data ? <Timeline entries={history.data.value} /> : <Loading />}
      {cancelling ? (
        <CancelDialog
          action={action}
          onClose={() => setCancelling(false)}
          onDone={(result, now) => {
            setCancelling(false);
            setOutcome(result);
            setAction((current) => later(current, now));
            history.reload();
          }}
        />
      ) : null}
    </section>
  );
}

function Timeline({ entries }: { entries: readonly HistoryEntry[] }) {
  const { t, dateTime } = useI18n();
  if (entries.length === 0) return <p class="muted">{t('action.historyEmpty')}</p>;
  return (
    <ol class="timeline">
      {entries.map((e) => (
        <li key={e.sequence} class={`entry kind-${e.kind}`} data-kind={e.kind}>
          <p class="entry-head">
            <time dateTime={e.dateTimeUtc}>{dateTime(e.dateTimeUtc)}</time> <strong>{t(`history.${e.kind}`)}</strong> {t('history.by', { actor: e.actor })}
          </p>
          {e.kind === 'transition' || e.kind === 'created' ? (
            <p>
              {t('history.fromTo', {
                from: e.fromStatus ? t(`status.${e.fromStatus}`) : t('common.none'),
                to: e.toStatus ? t(`status.${e.toStatus}`) : t('common.none'),
              })}
            </p>
          ) : null}
          {e.kind === 'late-report' ? <p>{t('history.lateExplained')}</p> : null}
          {Array.isArray(e.detail?.commands) ? (
            <ul class="entry-commands">
              {(e.detail.commands as { index: number; type: string; commandStatus: CommandWire['commandStatus'] }[]).map((c) => (
                <li>
                  {t('history.command', { index: c.index, type: c.type, status: t(`command.${c.commandStatus}`) })}
                </li>
              ))}
            </ul>
          ) : null}
          {e.comment ? <p class="entry-comment">{e.comment}</p> : null}
          {e.detail ? (
            <details>
              <summary>{t('history.detail')}</summary>
              <pre>{JSON.stringify(e.detail, null, 2)}</pre>
            </details>
          ) : null}
        </li>
      ))}
    </ol>
  );
}

function Commands({ action }: { action: MachineAction }) {
  const { t, dateTime } = useI18n();
  return (
    <>
      <h2>{t('action.commands')}</h2>
      <div class="table-wrap">
        <table>
          <caption class="visually-hidden">{t('action.commands')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('action.cmd.index')}</th>
              <th scope="col">{t('action.cmd.type')}</th>
              <th scope="col">{t('action.cmd.params')}</th>
              <th scope="col">{t('action.cmd.status')}</th>
              <th scope="col">{t('action.cmd.started')}</th>
              <th scope="col">{t('action.cmd.ended')}</th>
              <th scope="col">{t('action.cmd.errors')}</th>
              <th scope="col">{t('action.cmd.result')}</th>
            </tr>
          </thead>
          <tbody>
            {action.commands.map((c) => (
              <tr key={c.index} data-command-index={c.index}>
                <td>{c.index}</td>
                <td>{c.command.type}</td>
                <td>
                  {c.command.params.map((p) => (
                    <div>
                      <code>
                        {p.key}={p.value}
                      </code>
                    </div>
                  ))}
                </td>
                <td>{t(`command.${c.commandStatus}`)}</td>
                <td>{dateTime(c.startTime)}</td>
                <td>{dateTime(c.endTime)}</td>
                <td>{c.errors.length > 0 ? c.errors.join('; ') : t('common.none')}</td>
                <td>
                  <ResultLink action={action} command={c} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

/** Asks the contract's link route on demand (the links expire), and shows what it answers. */
function LinkButton({ label, path }: { label: string; path: string }) {
  const { api } = useApp();
  const { t } = useI18n();
  const [link, setLink] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [working, setWorking] = useState(false);
  const fetchLink = async () => {
    setWorking(true);
    setError(null);
    try {
      const body = await api.get<{ value: string }>(path);
      const safe = safeLink(body.value);
      if (!safe) throw new Error('not an http(s) link');
      setLink(safe);
    } catch (e) {
      setError(e);
    } finally {
      setWorking(false);
    }
  };
  return (
    <div class="link-cell">
      {link ? (
        <a href={link} rel="noreferrer" download>
          {t('action.link.download')}
        </a>
      ) : (
        <button type="button" onClick={fetchLink} disabled={working}>
          {label}
        </button>
      )}
      {error ? <InlineError error={error} /> : null}
    </div>
  );
}

function InlineError({ error }: { error: unknown }) {
  const { t } = useI18n();
  const { summary, detail } = describeError(t, error);
  return (
    <p class="hint" role="alert">
      {summary}
      {detail ? ` (${detail})` : ''}
    </p>
  );
}

function ResultLink({ action, command }: { action: MachineAction; command: CommandWire }) {
  const { session } = useApp();
  const { t } = useI18n();
  if (command.command.type === 'PutFile') return <span class="muted">{t('action.cmd.noResult')}</span>;
  if (command.commandStatus !== 'Completed') return <span class="muted">{t('action.cmd.notYet')}</span>;
  if (!can.resultLink(session)) return <span class="muted">{t('error.Forbidden')}</span>;
  return <LinkButton label={t('action.cmd.getLink')} path={`/api/machineactions/${action.id}/GetLiveResponseResultDownloadLink(index=${command.index})`} />;
}

function PackageLink({ action }: { action: MachineAction }) {
  const { session } = useApp();
  const { t } = useI18n();
  return (
    <section id="package-link" aria-labelledby="package-title">
      <h2 id="package-title">{t('action.package')}</h2>
      {action.status !== 'Succeeded' ? (
        <p class="muted">{t('action.package.notYet')}</p>
      ) : !can.packageLink(session) ? (
        <p class="muted">{t('error.Forbidden')}</p>
      ) : (
        <LinkButton label={t('action.package.getLink')} path={`/api/machineactions/${action.id}/getPackageUri`} />
      )}
    </section>
  );
}

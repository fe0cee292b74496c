import { useState } from 'preact/hooks';
import { ApiError, odataQuery, odataString, type Collection } from '../api.js';
import { ActionsTable } from '../components/ActionsTable.js';
import { StateLabel, useMachineStates } from '../components/MachineState.js';
import { Dialog, ErrorNote, HealthBadge, Loading, Row, type Sort } from '../components/ui.js';
import { href, useApp, useLive, useLoad, useThrottled } from '../context.js';
import { useI18n } from '../i18n.js';
import {
  ACTION_ROUTES,
  ACTION_TYPES,
  COMMAND_PARAMS,
  COMMAND_TYPES,
  ISOLATION_TYPES,
  SCAN_TYPES,
  can,
  type ActionType,
  type CommandType,
  type Machine,
  type MachineAction,
} from '../model.js';
import { LIVE_RELOAD_MS } from './Actions.js';

const RECENT = 10;

/** A machine's page: details, isolation and restriction, a button for each action type, its recent actions. */
export function MachinePage({ id }: { id: string }) {
  const { api, session } = useApp();
  const { t, dateTime, relative } = useI18n();
  const machine = useLoad(() => api.get<Machine>(`/api/machines/${encodeURIComponent(id)}`), id);
  const m = machine.data;
  const { states } = useMachineStates(m ? [m.id] : []);
  const [starting, setStarting] = useState<ActionType | null>(null);
  const [sort, setSort] = useState<Sort>({ property: 'creationDateTimeUtc', descending: true });
  const recentQuery = m
    ? odataQuery({ filter: [`machineId eq ${odataString(m.id)}`], orderBy: `${sort.property} ${sort.descending ? 'desc' : 'asc'}`, top: RECENT })
    : '';
  const recent = useLoad(
    () => (m ? api.get<Collection<MachineAction>>(`/api/machineactions${recentQuery}`) : Promise.resolve({ value: [] })),
    recentQuery,
  );
  const reloadRecent = useThrottled(recent.reload, LIVE_RELOAD_MS);
  useLive({
    change: (_change, action) => {
      if (m && action.machineId === m.id) reloadRecent();
    },
    resync: recent.reload,
  });

  if (machine.error instanceof ApiError && machine.error.status === 404) {
    return (
      <section aria-labelledby="page-title">
        <h1 id="page-title">{t('machine.notFound')}</h1>
        <p>
          <a href={href('machines')}>{t('machine.back')}</a>
        </p>
      </section>
    );
  }
  if (!m) return machine.error ? <ErrorNote error={machine.error} /> : <Loading />;

  const allowed = ACTION_TYPES.filter((type) => can.create(session, type));
  const state = states?.get(m.id);
  return (
    <section aria-labelledby="page-title">
      <p>
        <a href={href('machines')}>{t('machine.back')}</a>
      </p>
      <h1 id="page-title">{t('machine.title', { name: m.computerDnsName })}</h1>
      <h2>{t('machine.details')}</h2>
      <dl class="details">
        <Row label={t('machine.id')}>
          <code>{m.id}</code>
        </Row>
        <Row label={t('machine.health')}>
          <HealthBadge health={m.healthStatus} />
        </Row>
        <Row label={t('machine.lastSeen')}>
          <time dateTime={m.lastSeen ?? undefined}>
            {relative(m.lastSeen)} ({dateTime(m.lastSeen)})
          </time>
        </Row>
        <Row label={t('machine.firstSeen')}>{dateTime(m.firstSeen)}</Row>
        <Row label={t('machine.os')}>{[m.osPlatform, m.osVersion].filter(Boolean).join(' ')}</Row>
        <Row label={t('machine.agent')}>{m.agentVersion}</Row>
        <Row label={t('machine.ips')}>{m.ipAddresses.map((ip) => ip.ipAddress).join(', ') || m.lastIpAddress}</Row>
        <Row label={t('machine.group')}>{m.rbacGroupName ?? (m.rbacGroupId === null ? null : String(m.rbacGroupId))}</Row>
        <Row label={t('machine.tags')}>{m.machineTags.join(', ')}</Row>
        <Row label={t('machine.isolation')}>
          <span data-testid="isolation-state">
            <StateLabel state={state?.isolation} kind="isolation" />
          </span>
        </Row>
        <Row label={t('machine.restriction')}>
          <StateLabel state={state?.restriction} kind="restriction" />
        </Row>
      </dl>
      <h2>{t('machine.start')}</h2>
      {allowed.length === 0 ? (
        <p class="muted">{t('machine.startNone')}</p>
      ) : (
        <div class="action-buttons">
          {allowed.map((type) => (
            <button type="button" class={type === 'Offboard' ? 'danger' : ''} onClick={() => setStarting(type)}>
              {t(`type.${type}`)}
            </button>
          ))}
        </div>
      )}
      <h2>{t('machine.recent')}</h2>
      <ErrorNote error={recent.error} />
      <ActionsTable actions={recent.data?.value ?? []} sort={sort} onSort={setSort} caption={t('machine.recent')} showMachine={false} />
      {starting ? <StartDialog machine={m} type={starting} onClose={() => setStarting(null)} /> : null}
    </section>
  );
}

interface CommandDraft {
  type: CommandType;
  params: Record<string, string>;
}

/** The fields one action type needs (contract §2, request bodies), then POST and go to the new action. */
export function StartDialog({ machine, type, onClose }: { machine: Machine; type: ActionType; onClose(): void }) {
  const { api } = useApp();
  const { t } = useI18n();
  const [comment, setComment] = useState('');
  const [isolationType, setIsolationType] = useState<string>('Full');
  const [scanType, setScanType] = useState<string>('Quick');
  const [sha1, setSha1] = useState('');
  const [commands, setCommands] = useState<CommandDraft[]>([{ type: 'GetFile', params: {} }]);
  const [working, setWorking] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const name = t(`type.${type}`);

  const body = (): Record<string, unknown> => {
    const b: Record<string, unknown> = { Comment: comment };
    if (type === 'Isolate') b.IsolationType = isolationType;
    if (type === 'RunAntiVirusScan') b.ScanType = scanType;
    if (type === 'StopAndQuarantineFile') b.Sha1 = sha1.trim();
    if (type === 'LiveResponse') {
      b.Commands = commands.map((c) => ({
        type: c.type,
        params: COMMAND_PARAMS[c.type].filter((p) => p.required || (c.params[p.key] ?? '') !== '').map((p) => ({ key: p.key, value: c.params[p.key] ?? '' })),
      }));
    }
    return b;
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    setWorking(true);
    setError(null);
    try {
      const created = await api.post<MachineAction>(`/api/machines/${encodeURIComponent(machine.id)}/${ACTION_ROUTES[type]}`, body());
      onClose();
      location.hash = href(`actions/${created.id}`);
    } catch (e) {
      setError(e);
    } finally {
      setWorking(false);
    }
  };

  return (
    <Dialog title={t('start.title', { type: name, machine: machine.computerDnsName })} onClose={onClose}>
      <form onSubmit={submit}>
        {type === 'Offboard' ? (
          <p class="note warning">{t('start.offboardWarning')}</p>
        ) : null}
        <div class="field">
          <label for="start-comment">{t('start.comment')}</label>
          <textarea id="start-comment" required rows={3} maxLength={4096} value={comment} onInput={(e) => setComment(e.currentTarget.value)} />
        </div>
        {type === 'Isolate' ? (
          <div class="field">
            <label for="start-isolation">{t('start.isolationType')}</label>
            <select id="start-isolation" value={isolationType} onChange={(e) => setIsolationType(e.currentTarget.value)}>
              {ISOLATION_TYPES.map((v) => (
                <option value={v}>{v}</option>
              ))}
            </select>
          </div>
        ) : null}
        {type === 'RunAntiVirusScan' ? (
          <div class="field">
            <label for="start-scan">{t('start.scanType')}</label>
            <select id="start-scan" value={scanType} onChange={(e) => setScanType(e.currentTarget.value)}>
              {SCAN_TYPES.map((v) => (
                <option value={v}>{v}</option>
              ))}
            </select>
          </div>
        ) : null}
        {type === 'StopAndQuarantineFile' ? (
          <div class="field">
            <label for="start-sha1">{t('start.sha1')}</label>
            <input id="start-sha1" required pattern="[0-9a-fA-F]{40}" spellcheck={false} value={sha1} onInput={(e) => setSha1(e.currentTarget.value)} />
          </div>
        ) : null}
        {type === 'LiveResponse' ? <CommandsEditor commands={commands} onChange={setCommands} /> : null}
        {error ? <ErrorNote error={error} prefix={t('start.failed', { message: '' }).replace(/:\s*$/, ':')} /> : null}
        <div class="buttons">
          <button type="submit" class={type === 'Offboard' ? 'danger' : 'primary'} disabled={working}>
            {working ? t('start.working') : t('start.submit', { type: name })}
          </button>
          <button type="button" onClick={onClose}>
            {t('common.close')}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

function CommandsEditor({ commands, onChange }: { commands: CommandDraft[]; onChange(commands: CommandDraft[]): void }) {
  const { t } = useI18n();
  const update = (i: number, next: CommandDraft) => onChange(commands.map((c, j) => (j === i ? next : c)));
  return (
    <fieldset>
      <legend>{t('start.commands')}</legend>
      {commands.map((c, i) => (
        <div class="command" key={i}>
          <div class="field">
            <label for={`cmd-${i}-type`}>{t('start.commandType', { n: i + 1 })}</label>
            <select id={`cmd-${i}-type`} value={c.type} onChange={(e) => update(i, { type: e.currentTarget.value as CommandType, params: {} })}>
              {COMMAND_TYPES.map((type) => (
                <option value={type}>{type}</option>
              ))}
            </select>
          </div>
          {COMMAND_PARAMS[c.type].map((p) => (
            <div class="field">
              <label for={`cmd-${i}-${p.key}`}>{t('start.param', { n: i + 1, key: p.key })}</label>
              <input
                id={`cmd-${i}-${p.key}`}
                required={p.required}
                spellcheck={false}
                value={c.params[p.key] ?? ''}
                onInput={(e) => update(i, { ...c, params: { ...c.params, [p.key]: e.currentTarget.value } })}
              />
            </div>
          ))}
          {commands.length > 1 ? (
            <button type="button" onClick={() => onChange(commands.filter((_, j) => j !== i))}>
              {t('start.removeCommand', { n: i + 1 })}
            </button>
          ) : null}
        </div>
      ))}
      <button type="button" onClick={() => onChange([...commands, { type: 'GetFile', params: {} }])}>
        {t('start.addCommand')}
      </button>
    </fieldset>
  );
}

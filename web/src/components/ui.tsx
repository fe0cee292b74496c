import type { ComponentChildren } from 'preact';
import { useEffect, useId, useRef } from 'preact/hooks';
import { ApiError } from '../api.js';
import { useI18n, type MessageKey } from '../i18n.js';
import type { ActionStatus, HealthStatus } from '../model.js';

export function StatusBadge({ status }: { status: ActionStatus }) {
  const { t } = useI18n();
  return <span class={`badge status-${status}`}>{t(`status.${status}`)}</span>;
}

export function HealthBadge({ health }: { health: HealthStatus }) {
  const { t } = useI18n();
  return <span class={`badge health-${health}`}>{t(`health.${health}`)}</span>;
}

/** What went wrong, in the UI's language, with the server's own words and the request id. */
export function describeError(t: ReturnType<typeof useI18n>['t'], error: unknown): { summary: string; detail: string | null; requestId: string | null } {
  if (error instanceof ApiError) {
    const known = `error.${error.code}` as MessageKey;
    const summary = [t(known) === known ? t('error.other') : t(known), error.retryAfterSeconds ? t('common.retryAfter', { seconds: error.retryAfterSeconds }) : '']
      .filter(Boolean)
      .join(' ');
    return { summary, detail: error.message || null, requestId: error.requestId };
  }
  return { summary: t('error.network'), detail: error instanceof Error ? error.message : null, requestId: null };
}

export function ErrorNote({ error, prefix }: { error: unknown; prefix?: string }) {
  const { t } = useI18n();
  if (!error) return null;
  const { summary, detail, requestId } = describeError(t, error);
  return (
    <div class="note error" role="alert">
      <p>
        {prefix ? `${prefix} ` : ''}
        {summary}
      </p>
      {detail ? <p class="detail">{detail}</p> : null}
      {requestId ? <p class="detail">{t('common.requestId', { id: requestId })}</p> : null}
    </div>
  );
}

export function Loading() {
  const { t } = useI18n();
  return (
    <p class="muted" role="status">
      {t('common.loading')}
    </p>
  );
}

export interface Sort {
  property: string;
  descending: boolean;
}

/** A column header that sorts: a button inside the header cell, with aria-sort on the cell. */
export function SortHeader({ label, property, sort, onSort }: { label: string; property: string; sort: Sort; onSort(sort: Sort): void }) {
  const { t } = useI18n();
  const active = sort.property === property;
  // Times sort newest first on the first click; everything else A to Z.
  const next: Sort = { property, descending: active ? !sort.descending : property.endsWith('DateTimeUtc') || property === 'lastSeen' };
  return (
    <th scope="col" aria-sort={active ? (sort.descending ? 'descending' : 'ascending') : 'none'}>
      <button type="button" class="sort" onClick={() => onSort(next)} aria-label={t('common.sortBy', { column: label })}>
        {label}
        <span aria-hidden="true" class="sort-mark">
          {active ? (sort.descending ? ' ▼' : ' ▲') : ' ↕'}
        </span>
      </button>
    </th>
  );
}

export function Pager({ skip, top, total, onPage }: { skip: number; top: number; total: number; onPage(skip: number): void }) {
  const { t, number } = useI18n();
  if (total === 0) return null;
  const from = skip + 1;
  const to = Math.min(skip + top, total);
  return (
    <nav class="pager" aria-label={t('common.pagination')}>
      <button type="button" onClick={() => onPage(Math.max(0, skip - top))} disabled={skip === 0}>
        {t('common.previous')}
      </button>
      <span>{t('common.pageOf', { from: number(from), to: number(to), total: number(total) })}</span>
      <button type="button" onClick={() => onPage(skip + top)} disabled={to >= total}>
        {t('common.next')}
      </button>
    </nav>
  );
}

/**
 * A modal dialog on the native <dialog>: focus moves into it and stays there, Escape closes it,
 * and focus returns to what opened it.
 */
export function Dialog({ title, onClose, children }: { title: string; onClose(): void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const opener = document.activeElement as HTMLElement | null;
    const openerId = opener?.id;
    const dialog = ref.current;
    dialog?.showModal();
    return () => {
      // Closed before it leaves the page: while it is modal, everything outside it is inert
      // and cannot take the focus back.
      if (dialog?.open) dialog.close();
      // The opener may have been re-rendered while the dialog was open (a live update): then
      // the element with its id takes the focus. Tried again once the render has settled, but
      // only if nothing else has taken the focus meanwhile.
      const restore = () => {
        const target = opener?.isConnected ? opener : openerId ? document.getElementById(openerId) : null;
        const lost = document.activeElement === null || document.activeElement === document.body;
        if (target && lost) target.focus();
      };
      restore();
      setTimeout(restore, 0);
    };
  }, []);
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      onCancel={(event) => {
        event.preventDefault();
        onClose();
      }}
    >
      <h2 id={titleId}>{title}</h2>
      {children}
    </dialog>
  );
}

/** A definition list row that shows a dash for empty values. */
export function Row({ label, children }: { label: string; children: ComponentChildren }) {
  const { t } = useI18n();
  const empty = children === null || children === undefined || children === '';
  return (
    <div class="row">
      <dt>{label}</dt>
      <dd>{empty ? t('common.none') : children}</dd>
    </div>
  );
}

/** Only http(s) links from the API become hrefs. */
export function safeLink(value: string): string | null {
  try {
    const url = new URL(value, location.href);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

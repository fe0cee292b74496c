import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api.js';
import { useApp } from '../context.js';
import { useI18n } from '../i18n.js';
import { isFinal, type MachineAction } from '../model.js';
import { Dialog, ErrorNote } from './ui.js';

/** What a cancel came to: done, or the action had finished before it arrived (contract §4). */
export type CancelOutcome = { kind: 'done'; id: string } | { kind: 'tooLate'; id: string; status: MachineAction['status'] };

/** The outcome, said plainly. */
export function CancelOutcomeNote({ outcome }: { outcome: CancelOutcome | null }) {
  const { t } = useI18n();
  const ref = useRef<HTMLParagraphElement>(null);
  // The button that opened the dialog may be gone (the action is final now): the outcome takes
  // the focus, so a keyboard user continues from what happened.
  useEffect(() => {
    if (outcome) ref.current?.focus();
  }, [outcome]);
  if (!outcome) return null;
  return (
    <p ref={ref} tabIndex={-1} class={`note ${outcome.kind === 'done' ? 'success' : 'warning'}`} role="status" id="cancel-outcome">
      {outcome.kind === 'done' ? t('cancel.done') : t('cancel.tooLate', { status: t(`status.${outcome.status}`) })}
    </p>
  );
}

/** Asks for the reason and a confirmation, then cancels; a 400 for a final action reads back its status. */
export function CancelDialog({ action, onClose, onDone }: { action: MachineAction; onClose(): void; onDone(outcome: CancelOutcome, now: MachineAction): void }) {
  const { api } = useApp();
  const { t } = useI18n();
  const [comment, setComment] = useState('');
  const [working, setWorking] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [missing, setMissing] = useState(false);
  const commentRef = useRef<HTMLTextAreaElement>(null);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (!comment.trim()) {
      // The field to fix gets the focus, with the reason announced beside it.
      setMissing(true);
      commentRef.current?.focus();
      return;
    }
    setWorking(true);
    setError(null);
    try {
      const cancelled = await api.post<MachineAction>(`/api/machineactions/${action.id}/cancel`, { Comment: comment });
      onDone({ kind: 'done', id: action.id }, cancelled);
    } catch (e) {
      // A cancel of a final action is 400 BadRequest (contract §4): it finished first.
      if (e instanceof ApiError && e.status === 400 && e.code === 'BadRequest') {
        const now = await api.get<MachineAction>(`/api/machineactions/${action.id}`).catch(() => null);
        if (now && isFinal(now.status)) {
          onDone({ kind: 'tooLate', id: action.id, status: now.status }, now);
          return;
        }
      }
      setError(e);
    } finally {
      setWorking(false);
    }
  };
  return (
    <Dialog title={t('cancel.title')} onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <p>{t('cancel.explain', { type: t(`type.${action.type}`), machine: action.computerDnsName ?? action.machineId })}</p>
        <div class="field">
          <label for="cancel-comment">{t('cancel.comment')}</label>
          <textarea
            ref={commentRef}
            id="cancel-comment"
            aria-describedby={missing ? 'cancel-comment-missing' : undefined}
            required
            rows={3}
            maxLength={4096}
            value={comment}
            aria-invalid={missing}
            onInput={(e) => {
              setComment(e.currentTarget.value);
              setMissing(false);
            }}
          />
          {missing ? (
            <p class="hint" role="alert" id="cancel-comment-missing">
              {t('error.MissingRequiredParameter')}
            </p>
          ) : null}
        </div>
        {error ? <ErrorNote error={error} prefix={t('cancel.failed', { message: '' }).replace(/:\s*$/, ':')} /> : null}
        <div class="buttons">
          <button type="submit" class="danger" disabled={working}>
            {working ? t('cancel.working') : t('cancel.confirm')}
          </button>
          <button type="button" onClick={onClose}>
            {t('cancel.keep')}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

import { useState } from 'preact/hooks';
import { signIn, type Session } from '../api.js';
import { describeError } from '../components/ui.js';
import { useI18n } from '../i18n.js';

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/**
 * Sign-in through Countermand's own token endpoint. The form posts through script only (the
 * page's policy forbids form submission), so a secret never lands in a URL; nothing is stored.
 */
export function SignIn({ onSignedIn, notice }: { onSignedIn(session: Session): void; notice: string | null }) {
  const { t } = useI18n();
  const [kind, setKind] = useState<'application' | 'user'>('application');
  const [tenantId, setTenantId] = useState('');
  const [clientId, setClientId] = useState('');
  const [clientSecret, setClientSecret] = useState('');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [working, setWorking] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [invalid, setInvalid] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (!GUID.test(tenantId.trim())) {
      setInvalid(true);
      return;
    }
    setInvalid(false);
    setWorking(true);
    setError(null);
    try {
      const session = await signIn(
        kind === 'application' ? { kind, tenantId, clientId, clientSecret } : { kind, tenantId, username, password },
      );
      setClientSecret('');
      setPassword('');
      onSignedIn(session);
    } catch (e) {
      setError(e);
    } finally {
      setWorking(false);
    }
  };

  return (
    <main id="main" class="signin">
      <h1>{t('app.title')}</h1>
      <h2>{t('signin.title')}</h2>
      <p>{t('signin.intro')}</p>
      {notice ? (
        <p class="note" role="status">
          {notice}
        </p>
      ) : null}
      <form method="post" onSubmit={submit} noValidate>
        <div class="field">
          <label for="tenant">{t('signin.tenant')}</label>
          <input
            id="tenant"
            name="tenant"
            autocomplete="organization"
            spellcheck={false}
            required
            value={tenantId}
            onInput={(e) => setTenantId(e.currentTarget.value)}
            aria-describedby="tenant-hint"
            aria-invalid={invalid}
          />
          <p id="tenant-hint" class="hint">
            {invalid ? <strong role="alert">{t('signin.tenantInvalid')} </strong> : null}
            {t('signin.tenantHint')}
          </p>
        </div>
        <fieldset>
          <legend>{t('signin.method')}</legend>
          <label class="choice">
            <input type="radio" name="kind" value="application" checked={kind === 'application'} onChange={() => setKind('application')} />
            {t('signin.asApplication')}
          </label>
          <label class="choice">
            <input type="radio" name="kind" value="user" checked={kind === 'user'} onChange={() => setKind('user')} />
            {t('signin.asUser')}
          </label>
        </fieldset>
        {kind === 'application' ? (
          <>
            <div class="field">
              <label for="client-id">{t('signin.clientId')}</label>
              <input id="client-id" name="client_id" autocomplete="username" spellcheck={false} required value={clientId} onInput={(e) => setClientId(e.currentTarget.value)} />
            </div>
            <div class="field">
              <label for="client-secret">{t('signin.clientSecret')}</label>
              <input
                id="client-secret"
                name="client_secret"
                type="password"
                autocomplete="current-password"
                required
                value={clientSecret}
                onInput={(e) => setClientSecret(e.currentTarget.value)}
              />
            </div>
          </>
        ) : (
          <>
            <div class="field">
              <label for="username">{t('signin.username')}</label>
              <input id="username" name="username" autocomplete="username" spellcheck={false} required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
            </div>
            <div class="field">
              <label for="password">{t('signin.password')}</label>
              <input
                id="password"
                name="password"
                type="password"
                autocomplete="current-password"
                required
                value={password}
                onInput={(e) => setPassword(e.currentTarget.value)}
              />
            </div>
          </>
        )}
        <button type="submit" class="primary" disabled={working}>
          {working ? t('signin.working') : t('signin.submit')}
        </button>
      </form>
      {error ? <SignInError error={error} /> : null}
    </main>
  );
}

/** The token endpoint's own words (OAuth's error_description), or what the UI knows of the failure. */
function SignInError({ error }: { error: unknown }) {
  const { t } = useI18n();
  const { summary, detail, requestId } = describeError(t, error);
  return (
    <div class="note error" role="alert">
      <p>{t('signin.failed', { message: detail ?? summary })}</p>
      {requestId ? <p class="detail">{t('common.requestId', { id: requestId })}</p> : null}
    </div>
  );
}

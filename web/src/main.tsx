import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Api, type Session } from './api.js';
import { AppContext, href, useRoute, type AppState, type ChangeListener, type Live } from './context.js';
import { I18n, LANGUAGES, initialLanguage, rememberLanguage, translator, useI18n, type Language } from './i18n.js';
import { ActionPage } from './pages/Action.js';
import { ActionsPage } from './pages/Actions.js';
import { MachinePage } from './pages/Machine.js';
import { MachinesPage } from './pages/Machines.js';
import { SignIn } from './pages/SignIn.js';
import { ChangeStream, type StreamState } from './stream.js';
import './style.css';

function LanguageSwitch({ language, onChange }: { language: Language; onChange(language: Language): void }) {
  const { t } = useI18n();
  return (
    <div class="language">
      <label for="language">{t('language.label')}</label>
      <select id="language" value={language} onChange={(e) => onChange(e.currentTarget.value as Language)}>
        {(Object.keys(LANGUAGES) as Language[]).map((l) => (
          <option value={l} lang={l}>
            {LANGUAGES[l]}
          </option>
        ))}
      </select>
    </div>
  );
}

function App() {
  const [language, setLanguage] = useState<Language>(initialLanguage);
  const [session, setSession] = useState<Session | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const i18n = useMemo(() => translator(language), [language]);
  useEffect(() => {
    document.documentElement.lang = language;
    document.title = i18n.t('app.title');
  }, [language]);
  const changeLanguage = (l: Language) => {
    rememberLanguage(l);
    setLanguage(l);
  };
  const expire = () => {
    setSession(null);
    setNotice('expired');
  };
  return (
    <I18n.Provider value={i18n}>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById('main')?.focus())}>
        {i18n.t('app.skip')}
      </a>
      {session ? (
        <SignedIn key={session.token} session={session} language={language} onLanguage={changeLanguage} onSignOut={() => setSession(null)} onExpired={expire} />
      ) : (
        <>
          <header class="top">
            <span class="brand">{i18n.t('app.title')}</span>
            <LanguageSwitch language={language} onChange={changeLanguage} />
          </header>
          <SignIn
            notice={notice === 'expired' ? i18n.t('session.expired') : null}
            onSignedIn={(s) => {
              setNotice(null);
              setSession(s);
            }}
          />
        </>
      )}
    </I18n.Provider>
  );
}

function SignedIn({
  session,
  language,
  onLanguage,
  onSignOut,
  onExpired,
}: {
  session: Session;
  language: Language;
  onLanguage(l: Language): void;
  onSignOut(): void;
  onExpired(): void;
}) {
  const i18n = useI18n();
  const { t } = i18n;
  const route = useRoute();
  const [streamState, setStreamState] = useState<StreamState>('connecting');
  const [announcement, setAnnouncement] = useState('');
  const listeners = useRef(new Set<{ change?: ChangeListener; resync?: () => void }>());
  const expiredRef = useRef(onExpired);
  expiredRef.current = onExpired;

  useEffect(() => {
    const stream = new ChangeStream(session.token, {
      change: (change, action) => {
        for (const l of [...listeners.current]) l.change?.(change, action);
      },
      resync: () => {
        for (const l of [...listeners.current]) l.resync?.();
      },
      state: setStreamState,
      unauthorized: () => expiredRef.current(),
    });
    stream.start();
    // The session ends with its token (the API would answer 401 from then on).
    const timer = setTimeout(() => expiredRef.current(), Math.max(0, session.expiresAt - Date.now()));
    return () => {
      stream.stop();
      clearTimeout(timer);
    };
  }, [session]);

  const state = useMemo<AppState>(() => {
    const live: Live = {
      subscribe: (listener) => {
        listeners.current.add(listener);
        return () => listeners.current.delete(listener);
      },
    };
    return {
      session,
      live,
      api: new Api(session, () => expiredRef.current()),
      announce: (message) => setAnnouncement(message),
    };
  }, [session]);

  const [section = 'actions', id] = route.path;
  let page;
  if (section === 'machines') page = id ? <MachinePage key={id} id={id} /> : <MachinesPage route={route} />;
  else page = id ? <ActionPage key={id} id={id} /> : <ActionsPage route={route} />;

  return (
    <AppContext.Provider value={state}>
      <header class="top">
        <span class="brand">{t('app.title')}</span>
        <nav aria-label={t('nav.label')}>
          <a href={href('actions')} aria-current={section !== 'machines' ? 'page' : undefined}>
            {t('nav.actions')}
          </a>
          <a href={href('machines')} aria-current={section === 'machines' ? 'page' : undefined}>
            {t('nav.machines')}
          </a>
        </nav>
        <span class={`live live-${streamState}`} role="status" data-live={streamState}>
          {t(`live.${streamState}`)}
        </span>
        <span class="who" title={t('session.expires', { time: i18n.time(session.expiresAt) })}>
          {t('session.signedInAs', { who: `${session.who} (${t(session.kind === 'application' ? 'session.application' : 'session.user')})` })}
        </span>
        <LanguageSwitch language={language} onChange={onLanguage} />
        <button type="button" onClick={onSignOut}>
          {t('session.signOut')}
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
      <div class="visually-hidden" role="status" aria-live="polite">
        {announcement}
      </div>
    </AppContext.Provider>
  );
}

render(<App />, document.getElementById('app')!);

import { createContext } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import type { Api, Session } from './api.js';
import type { ChangeKind, MachineAction } from './model.js';

export type ChangeListener = (change: ChangeKind, action: MachineAction) => void;

export interface Live {
  /** Subscribes to the event stream's changes and re-read requests; returns the unsubscribe. */
  subscribe(listener: { change?: ChangeListener; resync?: () => void }): () => void;
}

export interface AppState {
  api: Api;
  session: Session;
  live: Live;
  /** Says something to screen-reader users (a polite live region). */
  announce(message: string): void;
}

export const AppContext = createContext<AppState | null>(null);

export function useApp(): AppState {
  const state = useContext(AppContext);
  if (!state) throw new Error('outside the signed-in app');
  return state;
}

/** The hash route: `#/actions/<id>?status=Pending` -> ['actions', '<id>'] and its parameters. */
export interface Route {
  path: string[];
  params: URLSearchParams;
}

export function parseRoute(hash: string): Route {
  const [path = '', query = ''] = hash.replace(/^#\/?/, '').split('?', 2);
  return { path: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

export const href = (path: string, params?: URLSearchParams | Record<string, string>) => {
  const query = params ? new URLSearchParams(params).toString() : '';
  return `#/${path}${query ? `?${query}` : ''}`;
};

export interface Loaded<T> {
  /** The last answer, possibly for an earlier key while a new one loads (see `current`). */
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Whether `data` answers the current key (not a page or filter shown before). */
  current: boolean;
  reload(): void;
}

/**
 * Loads `fetcher` when `key` changes; `reload` fetches again. An answer that arrives after a
 * newer request started is dropped, so quick filter changes never show stale rows.
 */
export function useLoad<T>(fetcher: () => Promise<T>, key: string): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; dataKey: string | null; error: unknown; loading: boolean }>({
    data: undefined,
    dataKey: null,
    error: null,
    loading: true,
  });
  const generation = useRef(0);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const keyRef = useRef(key);
  keyRef.current = key;
  const load = useCallback(() => {
    const mine = ++generation.current;
    const loadingKey = keyRef.current;
    setState((s) => ({ ...s, loading: true }));
    fetcherRef.current().then(
      (data) => mine === generation.current && setState({ data, dataKey: loadingKey, error: null, loading: false }),
      (error: unknown) => mine === generation.current && setState((s) => ({ ...s, error, loading: false })),
    );
  }, []);
  useEffect(load, [key, load]);
  return { data: state.data, error: state.error, loading: state.loading, current: state.dataKey === key, reload: load };
}

/** Calls `fn` at most once per `ms` (the last call wins), for re-reads prompted by live changes. */
export function useThrottled(fn: () => void, ms: number): () => void {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  return useCallback(() => {
    if (timer.current !== undefined) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      fnRef.current();
    }, ms);
  }, [ms]);
}

/** Subscribes the component to the live stream for as long as it is shown. */
export function useLive(listener: { change?: ChangeListener; resync?: () => void }): void {
  const { live } = useApp();
  const ref = useRef(listener);
  ref.current = listener;
  useEffect(
    () =>
      live.subscribe({
        change: (change, action) => ref.current.change?.(change, action),
        resync: () => ref.current.resync?.(),
      }),
    [live],
  );
}

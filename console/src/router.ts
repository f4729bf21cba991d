import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { view: 'documents' }
  | { view: 'document'; doc: string }
  | { view: 'history'; doc: string | undefined }
  | { view: 'audit' }
  | { view: 'health' }
  | { view: 'keys' };

const DOC = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Routes live in the URL's fragment: the server serves one page at /console whatever the view. */
export function parseRoute(hash: string): Route {
  const [view, doc] = hash.replace(/^#\/?/, '').split('/');
  const id = doc !== undefined && DOC.test(doc) ? doc : undefined;
  if (view === 'documents' && id) return { view: 'document', doc: id };
  if (view === 'history') return { view: 'history', doc: id };
  if (view === 'audit' || view === 'health' || view === 'keys') return { view };
  return { view: 'documents' };
}

export function href(route: Route): string {
  switch (route.view) {
    case 'document':
      return `#/documents/${route.doc}`;
    case 'history':
      return route.doc ? `#/history/${route.doc}` : '#/history';
    default:
      return `#/${route.view}`;
  }
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', update);
    return () => removeEventListener('hashchange', update);
  }, []);
  return route;
}

// Client-side routing under /ui/ with the History API: a path, its query, and a hook
// that re-renders on navigation. Small enough not to need a router package.
import { useEffect, useState } from "preact/hooks";

export const BASE = "/ui";

export interface Location {
  path: string; // without BASE, e.g. "/queue"
  query: URLSearchParams;
}

function current(): Location {
  const raw = window.location.pathname;
  const path = raw.startsWith(BASE) ? raw.slice(BASE.length) || "/" : raw;
  return { path, query: new URLSearchParams(window.location.search) };
}

const EVENT = "chroma:navigate";

/** Goes to an app path ("/record/ds/id?x=1"); replace keeps the history entry. */
export function navigate(to: string, replace = false): void {
  const url = BASE + to;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.dispatchEvent(new Event(EVENT));
}

export function href(to: string): string {
  return BASE + to;
}

export function useLocation(): Location {
  const [location, setLocation] = useState(current);
  useEffect(() => {
    const update = () => setLocation(current());
    window.addEventListener("popstate", update);
    window.addEventListener(EVENT, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(EVENT, update);
    };
  }, []);
  return location;
}

/** Plain left clicks on in-app links navigate without a page load. */
export function onLinkClick(event: MouseEvent): void {
  const anchor = (event.target as Element).closest?.("a");
  if (!anchor || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const target = anchor.getAttribute("href") ?? "";
  if (!target.startsWith(BASE + "/") || anchor.target) return;
  event.preventDefault();
  navigate(target.slice(BASE.length));
}

export function recordPath(dataset: string, id: string): string {
  return `/record/${encodeURIComponent(dataset)}/${encodeURIComponent(id)}`;
}

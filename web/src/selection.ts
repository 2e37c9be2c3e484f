// Records selected on the map, handed to the queue page (sessionStorage, not the URL:
// a selection can hold thousands of ids).

const STORAGE = "chroma.mapSelection";

export interface Picked {
  id: string;
  dataset: string;
  split: string;
  priority: number | null;
}

export function saveSelection(embeddingSetKey: string, picked: Picked[]): void {
  sessionStorage.setItem(STORAGE, JSON.stringify({ embeddingSetKey, picked }));
}

export function loadSelection(): { embeddingSetKey: string; picked: Picked[] } | null {
  const raw = sessionStorage.getItem(STORAGE);
  return raw ? JSON.parse(raw) : null;
}

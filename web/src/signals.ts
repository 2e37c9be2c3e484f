// The signals behind a queue position, in words (names in chroma/scoring/signals.py).
// `level` is the normalised 0-1 rank among training records; `raw` the signal itself.

const pct = (level: number) =>
  level >= 0.99 ? `p${(Math.floor(level * 1000) / 10).toFixed(1)}` : `p${Math.round(level * 100)}`;

const PHRASES: Record<string, (level: number, raw: number | undefined, predicted?: string | null) => string> = {
  mhb_predicted: (level, _raw, predicted) =>
    `far from its predicted class${predicted ? ` “${predicted}”` : ""} (Mahalanobis ${pct(level)})`,
  mhb_nearest: (level) => `far from every class (Mahalanobis ${pct(level)})`,
  mhb_relative: (level) => `unlike the training data as a whole (relative Mahalanobis ${pct(level)})`,
  knn_distance: (level) => `few similar training records nearby (kNN distance ${pct(level)})`,
  entropy: (level, raw) =>
    `the model is unsure (entropy ${raw === undefined ? pct(level) : raw.toFixed(2)})`,
  low_margin: (level, raw) =>
    `uncertain: margin ${raw === undefined ? pct(level) : (1 - raw).toFixed(2)}`,
  disagreement: (level, raw) =>
    `its neighbours disagree with the prediction (${
      raw === undefined ? pct(level) : `${Math.round(raw * 100)}% of them`
    })`,
};

/** Signals worth naming: at least `threshold` high among training, strongest first. */
export function reasons(
  signals: Record<string, number>,
  raw: Record<string, number> = {},
  predicted: string | null = null,
  threshold = 0.8,
  max = 3,
): string[] {
  const named = Object.entries(signals)
    .filter(([, level]) => Number.isFinite(level) && level >= threshold)
    .sort((a, b) => b[1] - a[1])
    .slice(0, max)
    .map(([name, level]) => phrase(name, level, raw[name], predicted));
  return named;
}

function phrase(name: string, level: number, raw: number | undefined, predicted: string | null): string {
  const words = PHRASES[name];
  return words ? words(level, raw, predicted) : `${name} ${pct(level)}`;
}

/** One line for the queue: the strong signals, or the strongest if none is. */
export function why(
  signals: Record<string, number>,
  raw: Record<string, number> = {},
  predicted: string | null = null,
): string {
  const named = reasons(signals, raw, predicted);
  if (named.length) return named.join("; ");
  const top = Object.entries(signals).filter(([, v]) => Number.isFinite(v)).sort((a, b) => b[1] - a[1])[0];
  return top ? `nothing stands out (highest: ${phrase(top[0], top[1], raw[top[0]], predicted)})` : "no signals";
}

export function signalLabel(name: string): string {
  return {
    mhb_predicted: "Mahalanobis, predicted class",
    mhb_nearest: "Mahalanobis, nearest class",
    mhb_relative: "relative Mahalanobis",
    knn_distance: "kNN distance to training",
    entropy: "entropy of the scores",
    low_margin: "low margin (1 - top1 + top2)",
    disagreement: "neighbours' labels disagree",
  }[name] ?? name;
}

// Colourings of map points (categorical, one palette index per point) and the types the
// scatter takes; kept apart from the WebGL code so pages load that only when they draw.

export type Mode = "pan" | "box" | "lasso";

export interface ScatterData {
  x: Float32Array; // data coordinates
  y: Float32Array;
  category: Float32Array; // index into palette per point
  palette: string[];
}

const SPLIT_COLOURS = ["#9ca3af", "#dc2626"];
const CLASS_COLOURS = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
];
// Training grey, then production priority in ten steps, pale to deep red.
const PRIORITY_COLOURS = ["#d1d5db", "#fde0c5", "#fcc5a0", "#fca97e", "#fb8c5c", "#f46d43",
  "#e8553a", "#d73027", "#bd1e26", "#a50f25", "#7f0020"];

export type ColourBy = "split" | "class" | "priority";

export interface Colouring {
  category: Float32Array;
  palette: string[];
  legend: [string, string][];
}

export function colour(
  by: ColourBy,
  points: { split: string[]; label_class: (string | null)[]; inference_class: (string | null)[]; priority: (number | null)[] },
): Colouring {
  const n = points.split.length;
  const category = new Float32Array(n);
  if (by === "split") {
    for (let i = 0; i < n; i++) category[i] = points.split[i] === "production" ? 1 : 0;
    return { category, palette: SPLIT_COLOURS, legend: [["training", SPLIT_COLOURS[0]], ["production", SPLIT_COLOURS[1]]] };
  }
  if (by === "priority") {
    for (let i = 0; i < n; i++) {
      const p = points.priority[i];
      category[i] = points.split[i] === "production" && p !== null ? 1 + Math.min(9, Math.floor(p * 10)) : 0;
    }
    return { category, palette: PRIORITY_COLOURS, legend: [["training / unscored", PRIORITY_COLOURS[0]], ["low priority", PRIORITY_COLOURS[1]], ["high priority", PRIORITY_COLOURS[10]]] };
  }
  // Class: the label for training records, the prediction for production ones.
  const classOf = (i: number) => (points.split[i] === "training" ? points.label_class[i] : points.inference_class[i]) ?? "(none)";
  const names = new Map<string, number>();
  const sorted = [...new Set(Array.from({ length: n }, (_, i) => classOf(i)))].sort();
  sorted.forEach((name, i) => names.set(name, i));
  for (let i = 0; i < n; i++) category[i] = names.get(classOf(i))!;
  const palette = [...names.keys()].map((_, i) => CLASS_COLOURS[i % CLASS_COLOURS.length]);
  return { category, palette: palette.length ? palette : ["#888"], legend: [...names.keys()].map((name, i) => [name, palette[i]]) };
}

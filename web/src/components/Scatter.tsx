// WebGL scatter of a map (regl-scatterplot): pan/zoom, box selection (our own, exact on
// screen positions) and lasso (the library's). The element exposes the drawn point count
// (data-point-count) and the data coordinates at its edges (data-view) so a test or a
// user script can relate pixels to points.
import createScatterplot from "regl-scatterplot";
import { useEffect, useRef, useState } from "preact/hooks";
import type { Mode, ScatterData } from "./colours";

export interface Props {
  data: ScatterData;
  mode?: Mode;
  highlight?: number | null;
  onSelect?: (indices: number[]) => void;
  height?: number;
}

type Plot = ReturnType<typeof createScatterplot>;

function normaliser(x: Float32Array, y: Float32Array) {
  // One scale for both axes (a projection's aspect means something), into [-0.95, 0.95].
  let [xmin, xmax, ymin, ymax] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; i < x.length; i++) {
    if (x[i] < xmin) xmin = x[i];
    if (x[i] > xmax) xmax = x[i];
    if (y[i] < ymin) ymin = y[i];
    if (y[i] > ymax) ymax = y[i];
  }
  const cx = (xmin + xmax) / 2;
  const cy = (ymin + ymax) / 2;
  const half = Math.max(xmax - xmin, ymax - ymin, 1e-9) / 2 / 0.95;
  return { cx, cy, half };
}

/** Data coordinates of the element's edges, from the screen positions of extreme points. */
function visibleRange(plot: Plot, x: Float32Array, y: Float32Array, width: number, height: number) {
  let [ix0, ix1, iy0, iy1] = [0, 0, 0, 0];
  for (let i = 0; i < x.length; i++) {
    if (x[i] < x[ix0]) ix0 = i;
    if (x[i] > x[ix1]) ix1 = i;
    if (y[i] < y[iy0]) iy0 = i;
    if (y[i] > y[iy1]) iy1 = i;
  }
  const [sx0] = plot.getScreenPosition(ix0)!;
  const [sx1] = plot.getScreenPosition(ix1)!;
  const [, sy0] = plot.getScreenPosition(iy0)!;
  const [, sy1] = plot.getScreenPosition(iy1)!;
  const ax = (sx1 - sx0) / (x[ix1] - x[ix0] || 1);
  const ay = (sy1 - sy0) / (y[iy1] - y[iy0] || 1);
  return {
    x0: x[ix0] + (0 - sx0) / ax,
    x1: x[ix0] + (width - sx0) / ax,
    y0: y[iy0] + (0 - sy0) / ay,
    y1: y[iy0] + (height - sy0) / ay,
  };
}

export function Scatter({ data, mode = "pan", highlight = null, onSelect, height = 560 }: Props) {
  const holder = useRef<HTMLDivElement>(null);
  const canvas = useRef<HTMLCanvasElement>(null);
  const plot = useRef<Plot | null>(null);
  const [drawn, setDrawn] = useState(0);
  const [view, setView] = useState("");
  const [box, setBox] = useState<{ x0: number; y0: number; x1: number; y1: number } | null>(null);
  const selectRef = useRef(onSelect);
  selectRef.current = onSelect;

  useEffect(() => {
    const element = canvas.current!;
    const scatter = createScatterplot({
      canvas: element,
      pointSize: data.x.length > 50000 ? 2 : 4,
      pointSizeSelected: highlight === null ? 3 : 8,
      pointOutlineWidth: 2,
      backgroundColor: "#ffffff",
      lassoColor: "#2563eb",
      colorBy: "valueA",
      pointColor: data.palette,
      opacityBy: null,
      deselectOnEscape: true,
      performanceMode: data.x.length > 500000,
    });
    plot.current = scatter;
    const { cx, cy, half } = normaliser(data.x, data.y);
    const nx = new Float32Array(data.x.length);
    const ny = new Float32Array(data.y.length);
    for (let i = 0; i < nx.length; i++) {
      nx[i] = (data.x[i] - cx) / half;
      ny[i] = (data.y[i] - cy) / half;
    }
    const updateView = () => {
      if (!nx.length) return;
      const r = visibleRange(scatter, data.x, data.y, element.clientWidth, element.clientHeight);
      setView(JSON.stringify(r));
    };
    scatter.subscribe("select", ({ points }: { points: number[] }) => selectRef.current?.(points));
    scatter.subscribe("deselect", () => selectRef.current?.([]));
    scatter.subscribe("view", updateView);
    scatter.draw({ x: nx, y: ny, valueA: data.category }).then(() => {
      setDrawn(nx.length);
      updateView();
    });
    return () => scatter.destroy();
  }, [data]);

  useEffect(() => {
    plot.current?.set({ mouseMode: mode === "lasso" ? "lasso" : "panZoom" });
  }, [mode, drawn]);

  useEffect(() => {
    if (drawn && highlight !== null && highlight >= 0) plot.current?.select([highlight], { preventEvent: true });
  }, [highlight, drawn]);

  const local = (event: MouseEvent) => {
    const rect = canvas.current!.getBoundingClientRect(); // getScreenPosition's frame
    return [event.clientX - rect.left, event.clientY - rect.top];
  };
  const down = (event: MouseEvent) => {
    event.preventDefault(); // a drag draws the box, it does not select text
    const [x, y] = local(event);
    setBox({ x0: x, y0: y, x1: x, y1: y });
  };
  const move = (event: MouseEvent) => {
    if (!box) return;
    const [x, y] = local(event);
    setBox({ ...box, x1: x, y1: y });
  };
  const up = () => {
    if (!box || !plot.current) return;
    const [left, right] = [Math.min(box.x0, box.x1), Math.max(box.x0, box.x1)];
    const [top, bottom] = [Math.min(box.y0, box.y1), Math.max(box.y0, box.y1)];
    const inside: number[] = [];
    for (let i = 0; i < drawn; i++) {
      const [sx, sy] = plot.current.getScreenPosition(i)!;
      if (sx >= left && sx <= right && sy >= top && sy <= bottom) inside.push(i);
    }
    setBox(null);
    plot.current.select(inside, { preventEvent: true });
    selectRef.current?.(inside);
  };

  return (
    <div class="scatter" ref={holder} style={{ height }} data-testid="scatter" data-point-count={drawn} data-view={view}>
      <canvas ref={canvas} style={{ width: "100%", height: "100%" }} />
      {mode === "box" && (
        <div class="box-layer" data-testid="box-layer" onMouseDown={down} onMouseMove={move} onMouseUp={up} onMouseLeave={up}>
          {box && (
            <div class="box" style={{
              left: Math.min(box.x0, box.x1), top: Math.min(box.y0, box.y1),
              width: Math.abs(box.x1 - box.x0), height: Math.abs(box.y1 - box.y0),
            }} />
          )}
        </div>
      )}
    </div>
  );
}

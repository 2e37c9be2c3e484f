// The scatter, loaded on first use: the queue never downloads the WebGL library.
import { useEffect, useState } from "preact/hooks";
import type { Props } from "./Scatter";

type ScatterComponent = (props: Props) => preact.JSX.Element;
let loaded: ScatterComponent | null = null;

export function LazyScatter(props: Props) {
  const [Component, setComponent] = useState<ScatterComponent | null>(() => loaded);
  useEffect(() => {
    if (!Component) {
      import("./Scatter").then((module) => {
        loaded = module.Scatter;
        setComponent(() => module.Scatter);
      });
    }
  }, []);
  return Component ? <Component {...props} /> : <p class="muted">Loading the map view…</p>;
}

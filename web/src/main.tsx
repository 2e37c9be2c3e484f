import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { AuthState, getAuthState, onAuth, tryKey } from "./api";
import { MapPage } from "./pages/Map";
import { QueuePage } from "./pages/Queue";
import { RecordPage } from "./pages/Record";
import { ServicePage } from "./pages/Service";
import { href, navigate, onLinkClick, useLocation } from "./router";
import "./style.css";

function KeyPrompt({ state }: { state: AuthState }) {
  const [key, setKey] = useState("");
  const [wrong, setWrong] = useState(state === "rejected");
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    const accepted = await tryKey(key.trim()).catch(() => false);
    setBusy(false);
    setWrong(!accepted);
  };
  return (
    <div class="overlay">
      <form class="key-prompt" data-testid="key-prompt" onSubmit={submit}>
        <h2>API key</h2>
        <p>This server needs an API key. It is kept for this browser tab only (sessionStorage).</p>
        <input
          type="password"
          name="api-key"
          autocomplete="off"
          placeholder="paste your key"
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
          autofocus
        />
        <button type="submit" disabled={busy || !key.trim()}>Use this key</button>
        {wrong && (
          <p class="error" data-testid="key-error" role="alert">
            The server did not accept this key (401 unknown API key). Check it and try again.
          </p>
        )}
      </form>
    </div>
  );
}

function Page({ path }: { path: string }) {
  const record = /^\/record\/([^/]+)\/(.+)$/.exec(path);
  if (record) {
    return <RecordPage dataset={decodeURIComponent(record[1])} id={decodeURIComponent(record[2])} />;
  }
  if (path === "/map") return <MapPage />;
  if (path === "/service") return <ServicePage />;
  if (path === "/" || path === "/queue") return <QueuePage />;
  return <p class="error">No page at {path}. <a href={href("/queue")}>Go to the queue</a>.</p>;
}

function App() {
  const location = useLocation();
  const [auth, setAuth] = useState<AuthState>(getAuthState());
  // Bumped when a key is accepted: pages remount and fetch again with it.
  const [generation, setGeneration] = useState(0);
  useEffect(
    () =>
      onAuth((state) => {
        setAuth(state);
        if (state === "ok") setGeneration((g) => g + 1);
      }),
    [],
  );
  const tab = (path: string, label: string) => (
    <a href={href(path)} class={location.path === path || (path === "/queue" && location.path === "/") ? "active" : ""}>
      {label}
    </a>
  );
  return (
    <div onClick={onLinkClick as unknown as (e: Event) => void}>
      <header>
        <strong class="brand" onClick={() => navigate("/queue")}>Chroma</strong>
        <nav>
          {tab("/queue", "Queue")}
          {tab("/map", "Map")}
          {tab("/service", "Service")}
        </nav>
      </header>
      <main key={generation}>
        <Page path={location.path} />
      </main>
      {auth !== "ok" && <KeyPrompt key={auth} state={auth} />}
    </div>
  );
}

render(<App />, document.getElementById("app")!);

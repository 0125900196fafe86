// The browser test page: bundled with esbuild from a scratch project where the
// packed tarball is installed, so it uses @phasecast/client/react exactly as a user
// would. Not compiled by tsc (test/tsconfig.json takes only .ts files).
//
//   index.html?ws=WS_URL[&format=json|protobuf][&raf=manual]
//
// raf=manual replaces requestAnimationFrame with a queue that the test runs by hand
// (window.__frame()), so that "at most one render per animation frame" is checked by
// counting, not by timing. Otherwise a rAF loop counts the real animation frames.
import { useState } from "react";
import { createRoot } from "react-dom/client";
import { usePccStream } from "@phasecast/client/react";

const params = new URLSearchParams(location.search);
const url = params.get("ws");
const format = params.get("format") ?? undefined;

const probe = { renders: 0, updates: 0, rafTicks: 0, view: undefined };
window.__probe = probe;

if (params.get("raf") === "manual") {
  const queue = new Map();
  let nextId = 1;
  window.requestAnimationFrame = (callback) => {
    const id = nextId++;
    queue.set(id, callback);
    return id;
  };
  window.cancelAnimationFrame = (id) => {
    queue.delete(id);
  };
  /** Frames waiting for the next animation frame. */
  window.__rafPending = () => queue.size;
  /** Runs one animation frame: the callbacks queued so far. */
  window.__frame = () => {
    const callbacks = [...queue.values()];
    queue.clear();
    for (const callback of callbacks) callback(performance.now());
    return callbacks.length;
  };
} else {
  const tick = () => {
    probe.rafTicks++;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

function Stream() {
  const view = usePccStream(url, {
    format,
    onEvent: (event) => {
      if (event.type === "update") probe.updates++;
    },
  });
  probe.renders++;
  probe.view = view;
  return (
    <section id="stream" data-seq={view.seq ?? ""} data-status={view.status} data-frames={view.stats.framesReceived}>
      <p>
        seq <span id="seq">{view.seq ?? "-"}</span>, status <span id="status">{view.status}</span>
      </p>
      <p>
        energy <span id="energy">{view.state === undefined ? "-" : view.state.energy.toFixed(4)}</span>,{" "}
        {view.state?.phases.length ?? 0} oscillators, {view.stats.framesReceived} frames
      </p>
      <p id="error">{view.error?.message ?? ""}</p>
    </section>
  );
}

function App() {
  const [mounted, setMounted] = useState(true);
  window.__unmount = () => setMounted(false);
  return mounted ? <Stream /> : <p id="unmounted">unmounted</p>;
}

createRoot(document.getElementById("root")).render(<App />);

// A phasecast TypeScript-client subscriber (Node) that prints every state it yields
// as one JSON line on stdout (seq, kind, epoch and the state) and exits once it has
// yielded the state with producer step FINAL_STEP. Run by tests/it/restart.rs with
// the client's built dist/ (PHASECAST_NODE_CONFORMANCE names a file in it).
//
//     node resume_client.mjs DIST_INDEX_JS URL FINAL_STEP
const [index, url, finalStep] = process.argv.slice(2);
const { Subscriber } = await import(index);
const sub = new Subscriber({ url, preferWsPackage: true });
let done = false;
sub.onUpdate((state, { seq, kind, epoch }) => {
  const line = JSON.stringify({
    seq,
    kind,
    epoch: epoch ?? null,
    step: state.step,
    phases: Array.from(state.phases),
    spins: Array.from(state.spins),
    energy: state.energy,
  });
  process.stdout.write(line + "\n");
  if (state.step === Number(finalStep)) {
    const resyncs = sub.stats.resyncs;
    done = true;
    sub.close();
    process.stdout.write("", () => process.exit(resyncs === 0 ? 0 : 3));
  }
});
sub.on("end", () => {
  if (done) return;
  process.stderr.write(`subscriber ended: ${sub.error?.message}\n`);
  process.exit(1);
});

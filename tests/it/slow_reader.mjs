// A phasecast TypeScript-client subscriber that reads one frame every INTERVAL
// seconds for DURATION seconds (pausing the socket in between, as a slow Node reader
// does) and reports how old each state it read was, as one JSON line on stdout. Run
// by tests/it/freshness.rs with the client's built dist/ (PHASECAST_NODE_CONFORMANCE
// names a file in it).
//
//     node slow_reader.mjs DIST_INDEX_JS URL INTERVAL DURATION
const [index, url, interval, duration] = process.argv.slice(2);
const { Subscriber } = await import(index);
const sub = new Subscriber({ url, preferWsPackage: true });
const ages = [];
const seqs = [];
const end = Date.now() + Number(duration) * 1000;
sub.onUpdate((state, { seq }) => {
  ages.push(Date.now() / 1000 - state.timestamp);
  seqs.push(seq);
  if (Date.now() >= end) {
    sub.close();
    const resyncs = sub.stats.resyncs;
    process.stdout.write(JSON.stringify({ ages, first_seq: seqs[0], last_seq: seqs.at(-1), frames: seqs.length, resyncs }) + "\n", () =>
      process.exit(resyncs === 0 ? 0 : 3),
    );
    return;
  }
  sub.pause();
  setTimeout(() => sub.resume(), Number(interval) * 1000);
});
sub.on("end", () => {
  if (Date.now() < end) {
    process.stderr.write(`subscriber ended: ${sub.error?.message}\n`);
    process.exit(1);
  }
});

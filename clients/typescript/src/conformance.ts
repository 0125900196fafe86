#!/usr/bin/env node
/// <reference types="node" />
/**
 * Conformance runner: follows a stream with the {@link Subscriber} API and prints,
 * after every frame that leaves it holding a verified state, that state as one JSON
 * line on stdout:
 *
 * ```text
 * {"seq":..,"step":..,"energy":..,"timestamp":..|null,"phases":[..],"spins":[..]}
 * ```
 *
 * The state is the one the subscriber holds: with `--fields`, the projected state
 * (the parts not taken empty, energy 0, timestamp null). When the frame carried
 * them, the line also has `"summary":{"r","psi","magnetization","energy","histogram"}`
 * and `"envelope":{"states","r":{"min","max","mean"},"psi",..,"magnetization",..,"energy",..}`
 * (32-bit floats in their shortest form, as the server writes them).
 *
 * Numbers are shortest round-trip (`String(x)`), negative zero as `-0.0`. Resyncs,
 * reconnects and closes go to stderr. Exits 0 once it holds a state with
 * seq >= `--until-seq`, 2 on timeout, 1 on bad arguments or a fatal error.
 *
 * ```text
 * node dist/conformance.js --url ws://127.0.0.1:PORT/ws --format json|protobuf \
 *   --delta true|false --until-seq S [--slow-ms MS] [--stream NAME] [--timeout SECONDS] [--key KEY] \
 *   [--epsilon E] [--fields LIST]
 * ```
 *
 * `--epsilon E` picks the precision class (`?epsilon=`); `--fields LIST` the parts of
 * the state (`?fields=phases,summary`; an unknown name exits 1).
 *
 * `--key KEY` is the subscriber key, sent as the `X-API-Key` header. A permanent
 * refusal (wrong key, path or parameter) exits 1 at once, with the server's reason
 * on stderr.
 *
 * `--slow-ms MS` makes it a slow reader: after each frame it pauses the subscriber
 * for MS milliseconds. Pausing stops reading the TCP socket (`ws`'s `pause()`,
 * which is `socket.pause()`), so the server's writes back up and it has to skip
 * frames; frames already read wait in order. Node-only; uses the `ws` package when
 * installed, else the global WebSocket (which cannot pause the socket).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatJsonArray, formatJsonNumber } from "./json.js";
import type { FrameExtras, Format, State } from "./model.js";
import { Subscriber } from "./subscriber.js";
import { formatEnvelopeJson, formatSummaryJson } from "./summary.js";
import { checkEpsilon, parseFields } from "./url.js";

/** One stdout line: the state held and its seq, and the frame's summary and envelope. */
export function stateLine(seq: number, state: State, extras: FrameExtras = {}): string {
  const timestamp = state.timestamp === undefined ? "null" : formatJsonNumber(state.timestamp);
  let line =
    `{"seq":${seq},"step":${state.step},"energy":${formatJsonNumber(state.energy)},` +
    `"timestamp":${timestamp},"phases":${formatJsonArray(state.phases)},"spins":${formatJsonArray(state.spins)}`;
  if (extras.summary !== undefined) line += `,"summary":${formatSummaryJson(extras.summary)}`;
  if (extras.envelope !== undefined) line += `,"envelope":${formatEnvelopeJson(extras.envelope)}`;
  return line + "}";
}

const USAGE =
  "usage: conformance --url ws://HOST:PORT/ws --format json|protobuf --delta true|false " +
  "--until-seq S [--slow-ms MS] [--stream NAME] [--timeout SECONDS] [--key KEY] [--epsilon E] [--fields LIST]";

interface Args {
  url: string;
  format: Format;
  delta: boolean;
  untilSeq: number;
  slowMs: number;
  stream: string | undefined;
  key: string | undefined;
  timeoutS: number;
  epsilon: number | undefined;
  fields: string[] | undefined;
}

function parse(argv: string[]): Args {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: "string" },
      format: { type: "string", default: "json" },
      delta: { type: "string", default: "true" },
      "until-seq": { type: "string" },
      "slow-ms": { type: "string", default: "0" },
      stream: { type: "string" },
      key: { type: "string" },
      timeout: { type: "string", default: "30" },
      epsilon: { type: "string" },
      fields: { type: "string" },
    },
    strict: true,
  });
  const format = values.format === "proto" ? "protobuf" : values.format;
  if (format !== "json" && format !== "protobuf") throw new Error(`--format: ${values.format}`);
  if (values.delta !== "true" && values.delta !== "false") throw new Error(`--delta: ${values.delta}`);
  if (values.url === undefined) throw new Error("--url is required");
  const untilSeq = Number(values["until-seq"]);
  const slowMs = Number(values["slow-ms"]);
  const timeoutS = Number(values.timeout);
  if (!Number.isSafeInteger(untilSeq) || untilSeq < 0) throw new Error("--until-seq: a seq is required");
  if (!(slowMs >= 0)) throw new Error(`--slow-ms: ${values["slow-ms"]}`);
  if (!(timeoutS > 0)) throw new Error(`--timeout: ${values.timeout}`);
  let epsilon: number | undefined;
  if (values.epsilon !== undefined) {
    const e = values.epsilon.trim() === "" ? NaN : Number(values.epsilon);
    try {
      epsilon = checkEpsilon(e);
    } catch (err) {
      throw new Error(`--epsilon: ${(err as Error).message}`);
    }
  }
  let fields: string[] | undefined;
  if (values.fields !== undefined) {
    try {
      fields = parseFields(values.fields.split(",").map((f) => f.trim()));
    } catch (err) {
      throw new Error(`--fields: ${(err as Error).message}`);
    }
  }
  return {
    url: values.url,
    format,
    delta: values.delta === "true",
    untilSeq,
    slowMs,
    stream: values.stream,
    key: values.key,
    timeoutS,
    epsilon,
    fields,
  };
}

function main(): void {
  let args: Args;
  try {
    args = parse(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    process.exit(1);
  }
  const log = (message: string): void => {
    process.stderr.write(`conformance: ${message}\n`);
  };

  const sub = new Subscriber({
    url: args.url,
    format: args.format,
    delta: args.delta,
    ...(args.stream === undefined ? {} : { stream: args.stream }),
    ...(args.key === undefined ? {} : { key: args.key }),
    ...(args.epsilon === undefined ? {} : { epsilon: args.epsilon }),
    ...(args.fields === undefined ? {} : { fields: args.fields }),
    preferWsPackage: true,
    reconnect: { initialMs: 100, maxMs: 2_000 },
  });

  let finished = false;
  const finish = (code: number): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    sub.close();
    // Exit once stdout has taken everything written so far.
    process.stdout.write("", () => process.exit(code));
  };
  const timer = setTimeout(() => {
    log(`timeout after ${args.timeoutS} s: holding seq ${sub.seq ?? "none"}, waiting for ${args.untilSeq}`);
    finish(2);
  }, args.timeoutS * 1000);

  sub.onUpdate((state, { seq, summary, envelope }) => {
    if (finished) return;
    const extras = { ...(summary === undefined ? {} : { summary }), ...(envelope === undefined ? {} : { envelope }) };
    process.stdout.write(stateLine(seq, state, extras) + "\n");
    if (seq >= args.untilSeq) {
      finish(0);
      return;
    }
    if (args.slowMs > 0) {
      sub.pause();
      setTimeout(() => sub.resume(), args.slowMs);
    }
  });
  sub.on("resync", (reason, error) => log(`resync (${reason})${error ? `: ${error.message}` : ""}`));
  sub.on("open", () => log(`connected: ${sub.stats.connections}`));
  sub.on("close", (code, reason) => log(`closed: ${code}${reason ? ` ${reason}` : ""}`));
  sub.on("reconnect", (attempt, delay, error) =>
    log(`reconnect #${attempt} in ${Math.round(delay)} ms (resume=${sub.seq ?? "none"}): ${error.message}`),
  );
  sub.on("status", ({ status, previous }) => log(`status: ${previous} -> ${status}`));
  sub.on("end", () => {
    if (!finished) {
      log(`subscriber ended${sub.error ? `: ${sub.error.message}` : ""}`);
      finish(1);
    }
  });
}

main();

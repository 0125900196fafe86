/**
 * The subscriber's URL, built as docs/clients.md ("URL and options") says:
 *
 * - `http(s)://` becomes `ws(s)://`; a path that is empty or `/` becomes `/ws`, any
 *   other path is kept (a wrong one fails at once with 404).
 * - Query parameters already in the URL are kept; an option given explicitly replaces
 *   the parameter of the same name; nothing is dropped; values are URL-encoded.
 * - `resume` and `epoch` are the client's own: it sets them from the state it holds.
 *
 * @module
 */

import { FIELDS, type Field, type Format } from "./model.js";

/** The query-string options of a subscription. */
export interface UrlOptions {
  readonly format?: Format | undefined;
  readonly delta?: boolean | undefined;
  readonly maxHz?: number | undefined;
  /** The precision class (`?epsilon=`), radians. */
  readonly epsilon?: number | undefined;
  /** The parts of the state to take (`?fields=`); checked with {@link parseFields}. */
  readonly fields?: readonly string[] | undefined;
  readonly stream?: string | undefined;
  /** Put in the URL as `key` (browsers); `undefined` leaves the URL's own `key`. */
  readonly queryKey?: string | undefined;
  /** Remove the URL's `key`: the key option replaces it (and goes in a header). */
  readonly dropUrlKey?: boolean | undefined;
  /** More parameters, set as given (the named options above win over these). */
  readonly params?: Readonly<Record<string, string | number | boolean>> | undefined;
}

/**
 * `fields` checked and put in the server's order, without repeats: the value of
 * `?fields=` (`["summary", "phases"]` → `["phases", "summary"]`).
 *
 * @throws {TypeError} for an empty list or a name that is not one of
 *   phases, spins, energy, timestamp, summary (the server would refuse it with 400).
 */
export function parseFields(fields: readonly string[]): Field[] {
  if (!Array.isArray(fields)) throw new TypeError(`fields must be an array of names (${FIELDS.join(", ")})`);
  if (fields.length === 0) {
    throw new TypeError(`fields: an empty list takes nothing; name some of ${FIELDS.join(", ")}`);
  }
  const known = new Set<string>(FIELDS);
  for (const name of fields) {
    if (typeof name !== "string" || !known.has(name)) {
      throw new TypeError(`fields: unknown field ${JSON.stringify(name)} (known: ${FIELDS.join(", ")})`);
    }
  }
  return FIELDS.filter((f) => fields.includes(f));
}

/**
 * Whether frames for these fields have a body: with phases or spins they are full
 * frames and deltas; without, each stands alone.
 */
export function fieldsHaveBody(fields: readonly Field[]): boolean {
  return fields.includes("phases") || fields.includes("spins");
}

/**
 * `epsilon` checked: a finite number ≥ 0 (one of the server's `precision_classes`;
 * the server refuses any other with 400 naming `epsilon`).
 *
 * @throws {RangeError} for a negative, infinite or NaN epsilon.
 */
export function checkEpsilon(epsilon: number): number {
  if (typeof epsilon !== "number" || !Number.isFinite(epsilon) || epsilon < 0) {
    throw new RangeError(`epsilon must be a finite number ≥ 0 (radians), got ${String(epsilon)}`);
  }
  return epsilon;
}

/** The parameters the client sets itself on every connection. */
export const CLIENT_PARAMS: readonly string[] = ["resume", "epoch"];

/**
 * The base `/ws` URL of a subscription, without `resume`/`epoch`.
 *
 * @throws {TypeError} for a URL that does not parse, a scheme other than
 *   ws/wss/http/https, `resume`/`epoch` given in the URL, or `fields` with an
 *   unknown name; {RangeError} for an epsilon below 0.
 */
export function subscriptionUrl(input: string | URL, options: UrlOptions = {}): URL {
  const url = new URL(typeof input === "string" ? input : input.href);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  else if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new TypeError(`${url.protocol} is not a WebSocket URL scheme (use ws://, wss://, http:// or https://)`);
  }
  if (url.pathname === "" || url.pathname === "/") url.pathname = "/ws";
  url.hash = "";
  const q = url.searchParams;
  for (const name of CLIENT_PARAMS) {
    if (q.has(name)) {
      throw new TypeError(
        `the URL has "${name}": the client sets resume and epoch itself, from the state it holds`,
      );
    }
  }
  for (const [name, value] of Object.entries(options.params ?? {})) {
    if (CLIENT_PARAMS.includes(name)) {
      throw new TypeError(`params.${name}: the client sets resume and epoch itself`);
    }
    q.set(name, String(value));
  }
  if (options.format !== undefined) q.set("format", options.format);
  if (options.delta !== undefined) q.set("delta", String(options.delta));
  if (options.maxHz !== undefined) q.set("max_hz", String(options.maxHz));
  if (options.epsilon !== undefined) q.set("epsilon", String(checkEpsilon(options.epsilon)));
  if (options.fields !== undefined) q.set("fields", parseFields(options.fields).join(","));
  if (options.stream !== undefined) q.set("stream", options.stream);
  if (options.queryKey !== undefined) q.set("key", options.queryKey);
  else if (options.dropUrlKey) q.delete("key");
  return url;
}

/** `base` with `resume` (and `epoch`, when known) for the state held. */
export function withResume(base: URL, seq: number | undefined, epoch: string | undefined): string {
  if (seq === undefined) return base.href;
  const url = new URL(base.href);
  url.searchParams.set("resume", String(seq));
  if (epoch !== undefined) url.searchParams.set("epoch", epoch);
  return url.href;
}

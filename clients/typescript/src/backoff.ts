/**
 * Reconnect delays: exponential back-off with a cap and random jitter, so that many
 * clients dropped at once by a restarting server do not all come back at once.
 *
 * Try `n` (0 for the first retry) waits `min(maxMs, initialMs · factor^n) · (1 - jitter + jitter · random())`;
 * with the defaults that is `min(10 s, 250 ms · 2^n) · (0.5 + 0.5 · random())`, as
 * docs/clients.md specifies for every phasecast client.
 *
 * @module
 */

/** How long to wait before reconnecting. All fields optional. */
export interface BackoffOptions {
  /** Delay before the first retry, in ms. Default 250. */
  readonly initialMs?: number | undefined;
  /** The longest delay, in ms. Default 10 000. */
  readonly maxMs?: number | undefined;
  /** Growth per failed attempt. Default 2. */
  readonly factor?: number | undefined;
  /**
   * Fraction of the delay that is random, 0..1. Default 0.5: the delay is uniform in
   * [d/2, d) where d = min(maxMs, initialMs · factor^attempt).
   */
  readonly jitter?: number | undefined;
}

/**
 * The delay before retry number `attempt` (0 for the first retry).
 *
 * @param random a source of numbers in [0, 1) (tests pass a fixed one).
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const initial = options.initialMs ?? 250;
  const max = options.maxMs ?? 10_000;
  const factor = options.factor ?? 2;
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
  const base = Math.min(max, initial * factor ** Math.min(attempt, 64));
  return base * (1 - jitter + jitter * random());
}

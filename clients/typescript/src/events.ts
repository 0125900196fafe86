/**
 * A small typed event emitter that works the same in browsers and Node.
 *
 * @module
 */

type AnyListener = (...args: unknown[]) => void;

/** Calls listeners registered with `on`; a throwing listener does not stop the others. */
/**
 * `E` maps each event name to its listener's arguments, e.g.
 * `{ update: [state: State]; end: [] }`.
 */
export class Emitter<E extends { [K in keyof E]: unknown[] }> {
  // Listeners are stored untyped; `on` and `emit` keep the types per event.
  readonly #listeners = new Map<keyof E, Set<AnyListener>>();

  /**
   * Calls `listener` on every `event` until the returned function is called.
   */
  on<K extends keyof E>(event: K, listener: (...args: E[K]) => void): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as AnyListener);
    return () => {
      set.delete(listener as AnyListener);
    };
  }

  /** Whether anyone listens to `event`. */
  has(event: keyof E): boolean {
    return (this.#listeners.get(event)?.size ?? 0) > 0;
  }

  /**
   * Calls the listeners of `event`. An error thrown by one is rethrown on a later
   * task (reported like any uncaught error) so the protocol handling goes on.
   */
  emit<K extends keyof E>(event: K, ...args: E[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }
}

/**
 * The data model shared by the codecs, the delta logic and the client: a PCC state
 * and the two kinds of frame a subscriber receives. Nothing here depends on an
 * encoding; see `codec.ts` for turning bytes into these types.
 *
 * @module
 */

/** The wire encodings: JSON text frames or protobuf (`pcc.v1.Frame`) binary frames. */
export type Format = "json" | "protobuf";

/**
 * One state of the simulation, as held by a subscriber.
 *
 * States produced by this library are never mutated after they are handed out:
 * applying a delta makes a new `State`, so it is safe to keep a reference.
 */
export interface State {
  /**
   * The producer's step counter. A `uint64` on the wire, held as a `number`: exact
   * while below 2^53 (a step counter at 1 MHz takes 285 years to get there).
   */
  readonly step: number;
  /**
   * Oscillator phases in radians, bit-exact as the server holds them (within the
   * subscription's ε). Empty when the subscription does not take `phases`.
   */
  readonly phases: Float64Array;
  /** Spins, each +1 or -1; empty, or one per phase. Empty without `spins` in `fields`. */
  readonly spins: Int8Array;
  /** Energy of the state; 0 when the subscription does not take `energy`. */
  readonly energy: number;
  /**
   * Producer clock in seconds since the Unix epoch, when the state has one (and the
   * subscription takes `timestamp`).
   */
  readonly timestamp?: number;
}

/**
 * A state as a producer writes it: plain arrays are accepted as well as typed arrays.
 */
export interface StateInput {
  readonly step: number;
  readonly phases: ArrayLike<number>;
  readonly spins?: ArrayLike<number>;
  readonly energy: number;
  readonly timestamp?: number | null;
}

/**
 * The parts of a state a subscriber may take (`?fields=`), in the order the server
 * writes them. `summary` adds the server's {@link Summary} to every frame.
 */
export type Field = "phases" | "spins" | "energy" | "timestamp" | "summary";

/** Every {@link Field}, in the server's order. */
export const FIELDS: readonly Field[] = ["phases", "spins", "energy", "timestamp", "summary"];

/**
 * Quantities the server derives from one state (with `fields` taking `summary`),
 * from the producer's state, not the view within ε. 32-bit floats on the wire, held
 * as the `number` of that `float32` in both encodings.
 */
export interface Summary {
  /** Kuramoto order parameter r = |(1/N) Σ e^{iθ_k}|, in [0, 1] (0 without phases). */
  readonly r: number;
  /** Its angle ψ in radians, in (-π, π]; 0 when r is 0. */
  readonly psi: number;
  /** Mean spin, in [-1, 1]; 0 without spins. */
  readonly magnetization: number;
  /** The state's energy (as a 32-bit float; `fields` with `energy` gives the exact one). */
  readonly energy: number;
  /** Count of phases per bin: bin k holds the phases (wrapped into [0, 2π)) in [k·2π/B, (k+1)·2π/B). */
  readonly histogram: Uint32Array;
}

/** Least, greatest and mean value of one summary quantity over an {@link Envelope}'s states. */
export interface Range {
  readonly min: number;
  readonly max: number;
  readonly mean: number;
}

/**
 * The range of each summary quantity over every state since the subscriber's
 * previous frame, this frame's included (with `maxHz` and `fields` taking `summary`):
 * a spike between two frames still shows.
 */
export interface Envelope {
  /** How many states it covers. */
  readonly states: number;
  readonly r: Range;
  readonly psi: Range;
  readonly magnetization: Range;
  readonly energy: Range;
}

/** What a frame may carry besides its state: the summary and the envelope. */
export interface FrameExtras {
  /** The state's summary, when the subscription takes `summary`. */
  readonly summary?: Summary;
  /** The envelope since the previous frame, with `maxHz` and `summary`. */
  readonly envelope?: Envelope;
}

/**
 * A frame that carries the whole state with seq `seq`: the parts of it the
 * subscription takes (`fields`); the others are empty, 0 or absent.
 */
export interface FullFrame extends FrameExtras {
  readonly kind: "full";
  readonly seq: number;
  readonly state: State;
  /**
   * The stream's epoch: an opaque id that changes whenever the stream's seq numbering
   * could start again (a server restart). Absent when the server does not send one
   * (servers before `Frame.epoch`, an empty string on the wire, frames without a body).
   */
  readonly epoch?: string;
  /**
   * Set on a frame without a body (a subscription taking neither phases nor spins,
   * e.g. `fields: ["summary"]`): a state with no phases and no spins that stands
   * alone. It has no epoch, nothing resumes from it and no delta follows it.
   */
  readonly standalone?: true;
}

/**
 * A frame that turns the state with seq `baseSeq` into the state with seq `seq`.
 *
 * Index lists are already resolved (gaps and dense lists expanded), in the order
 * they are to be applied: `stepIndices`/`stepCounts`, then
 * `valueIndices`/`values`, then `flips`, then `spinIndices`/`spinValues`.
 */
export interface DeltaFrame extends FrameExtras {
  readonly kind: "delta";
  readonly seq: number;
  readonly baseSeq: number;
  readonly step: number;
  /** The new energy (0 when the subscription does not take `energy`). */
  readonly energy: number;
  /** Absent when the new state has no timestamp (even if the base had one). */
  readonly timestamp?: number;
  /** Checksum of the state this delta produces (see `checksum.ts`). */
  readonly checksum: bigint;
  /** One quantum is `2 ** quantumExp` radians. */
  readonly quantumExp: number;
  /** Phases that move by `stepCounts[k] * 2 ** quantumExp` (protobuf only). */
  readonly stepIndices: ArrayLike<number>;
  readonly stepCounts: ArrayLike<number>;
  /** Phases replaced by `values[k]`. */
  readonly valueIndices: ArrayLike<number>;
  readonly values: ArrayLike<number>;
  /** Spins that change sign (protobuf). */
  readonly flips: ArrayLike<number>;
  /** Spins set to `spinValues[k]` (JSON carries the new values, not flips). */
  readonly spinIndices: ArrayLike<number>;
  readonly spinValues: ArrayLike<number>;
  /**
   * When a protobuf list was sent dense (no index gaps), its length: the base state
   * must have exactly this many phases.
   */
  readonly denseLength?: number;
}

/** Either kind of frame. */
export type Frame = FullFrame | DeltaFrame;

/** Copies a `StateInput` into a `State` (typed arrays, no shared storage). */
export function toState(input: StateInput): State {
  const state: {
    step: number;
    phases: Float64Array;
    spins: Int8Array;
    energy: number;
    timestamp?: number;
  } = {
    step: input.step,
    phases: Float64Array.from(input.phases),
    spins: Int8Array.from(input.spins ?? []),
    energy: input.energy,
  };
  if (input.timestamp !== undefined && input.timestamp !== null) {
    state.timestamp = input.timestamp;
  }
  return state;
}

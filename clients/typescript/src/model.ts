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
  /** Oscillator phases in radians, bit-exact as the server holds them. */
  readonly phases: Float64Array;
  /** Spins, each +1 or -1; empty, or one per phase. */
  readonly spins: Int8Array;
  /** Energy of the state. */
  readonly energy: number;
  /** Producer clock in seconds since the Unix epoch, when the state has one. */
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

/** A frame that carries the whole state with seq `seq`. */
export interface FullFrame {
  readonly kind: "full";
  readonly seq: number;
  readonly state: State;
  /**
   * The stream's epoch: an opaque id that changes whenever the stream's seq numbering
   * could start again (a server restart). Absent when the server does not send one
   * (servers before `Frame.epoch`, or an empty string on the wire).
   */
  readonly epoch?: string;
}

/**
 * A frame that turns the state with seq `baseSeq` into the state with seq `seq`.
 *
 * Index lists are already resolved (gaps and dense lists expanded), in the order
 * they are to be applied: `stepIndices`/`stepCounts`, then
 * `valueIndices`/`values`, then `flips`, then `spinIndices`/`spinValues`.
 */
export interface DeltaFrame {
  readonly kind: "delta";
  readonly seq: number;
  readonly baseSeq: number;
  readonly step: number;
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

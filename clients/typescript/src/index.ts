/**
 * `@phasecast/client`: subscribe to and publish PCC states on a phasecast server.
 *
 * - {@link Subscriber} / {@link Producer}: the client API (`client.ts`).
 * - {@link decodeFrame}, {@link applyDelta}, {@link checksum}, {@link encodeState}:
 *   the codec, for those who bring their own transport (`codec.ts`).
 * - {@link Summary}, {@link Envelope}: what the server adds with `fields` taking
 *   `summary` (`summary.ts` merges envelopes and formats their 32-bit floats).
 * - `pb`: the generated protobuf types and schemas (`pcc.v1`).
 *
 * The React hook `usePccStream` is the separate entry point `@phasecast/client/react`
 * (so that this one never loads React).
 *
 * @module
 */

export * from "./client.js";
export * from "./codec.js";
export {
  FIELDS,
  toState,
  type DeltaFrame,
  type Envelope,
  type Field,
  type Format,
  type Frame,
  type FrameExtras,
  type FullFrame,
  type Range,
  type State,
  type StateInput,
  type Summary,
} from "./model.js";
export { envelopeOf, formatFloat32, mergeEnvelopes } from "./summary.js";
export * as pb from "./gen/pcc/v1/pcc_pb.js";

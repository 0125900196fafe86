/**
 * `@phasecast/client`: subscribe to and publish PCC states on a phasecast server.
 *
 * - {@link Subscriber} / {@link Producer}: the client API (`client.ts`).
 * - {@link decodeFrame}, {@link applyDelta}, {@link checksum}, {@link encodeState}:
 *   the codec, for those who bring their own transport (`codec.ts`).
 * - `pb`: the generated protobuf types and schemas (`pcc.v1`).
 *
 * The React hook `usePccStream` is the separate entry point `@phasecast/client/react`
 * (so that this one never loads React).
 *
 * @module
 */

export * from "./client.js";
export * from "./codec.js";
export { toState, type DeltaFrame, type Format, type Frame, type FullFrame, type State, type StateInput } from "./model.js";
export * as pb from "./gen/pcc/v1/pcc_pb.js";

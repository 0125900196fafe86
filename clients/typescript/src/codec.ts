/**
 * Frames in, states out — the codec facade for both encodings.
 *
 * - {@link decodeFrame}: one WebSocket message (text: JSON; binary: protobuf) to a
 *   {@link Frame}.
 * - {@link applyDelta}: a delta frame applied to the state held, checksum verified.
 * - {@link checksum}: the 64-bit state checksum.
 * - {@link encodeState} / {@link encodeResync}: what producers and subscribers send.
 *
 * @module
 */

import { DecodeError } from "./errors.js";
import { decodeJsonFrame, encodeJsonState, JSON_RESYNC } from "./json.js";
import type { Format, Frame, StateInput } from "./model.js";
import { decodeProtobufFrame, encodeProtobufResync, encodeProtobufState } from "./protobuf.js";

export { ApplyError, applyDelta, pow2, type ApplyErrorReason } from "./delta.js";
export { checksum, checksumHex, float64Bits, parseChecksumHex } from "./checksum.js";
export { DecodeError } from "./errors.js";
export { decodeJsonFrame, encodeJsonState, formatJsonArray, formatJsonNumber } from "./json.js";
export { decodeProtobufFrame, encodeProtobufResync, encodeProtobufState } from "./protobuf.js";

/** What a WebSocket message holds: text, or binary in any of the usual shapes. */
export type MessageData = string | ArrayBuffer | ArrayBufferView;

/** The bytes of a binary message as a `Uint8Array` (no copy). */
export function asBytes(data: ArrayBuffer | ArrayBufferView): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(data);
}

/** The size of a message in bytes (JSON frames are ASCII: one byte a character). */
export function messageSize(data: MessageData): number {
  return typeof data === "string" ? data.length : data.byteLength;
}

/** The encoding a message is in: text frames are JSON, binary frames protobuf. */
export function messageFormat(data: MessageData): Format {
  return typeof data === "string" ? "json" : "protobuf";
}

/**
 * Decodes one frame. Text is JSON, binary is protobuf `pcc.v1.Frame`: the server
 * sends JSON frames as text messages and protobuf frames as binary ones.
 *
 * @throws {DecodeError} when the message is not a valid frame.
 */
export function decodeFrame(data: MessageData): Frame {
  if (typeof data === "string") return decodeJsonFrame(data);
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    return decodeProtobufFrame(asBytes(data));
  }
  throw new DecodeError("protobuf", `unsupported message data: ${Object.prototype.toString.call(data)}`);
}

/**
 * A producer state in the given encoding: JSON text or protobuf `PccState` bytes.
 *
 * @throws {RangeError} for a step that is not a non-negative safe integer, or (JSON)
 *   a value JSON cannot carry.
 */
export function encodeState(state: StateInput, format: "json"): string;
export function encodeState(state: StateInput, format: "protobuf"): Uint8Array;
export function encodeState(state: StateInput, format: Format): string | Uint8Array;
export function encodeState(state: StateInput, format: Format): string | Uint8Array {
  return format === "json" ? encodeJsonState(state) : encodeProtobufState(state);
}

/** The subscriber's resync request: `{"op":"resync"}` text, or binary `ClientMessage`. */
export function encodeResync(format: Format): string | Uint8Array {
  return format === "json" ? JSON_RESYNC : encodeProtobufResync();
}

/** The HTTP content type of a state body in this encoding. */
export function contentType(format: Format): string {
  return format === "json" ? "application/json" : "application/x-protobuf";
}

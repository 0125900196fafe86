/**
 * Errors raised while turning bytes into frames.
 *
 * @module
 */

import type { Format } from "./model.js";

/**
 * Bytes that are not a valid frame: not JSON / not protobuf, a required field
 * missing or of the wrong type, index gaps that do not match their list. A
 * subscriber that gets one drops its state and asks for a full frame.
 */
export class DecodeError extends Error {
  override readonly name = "DecodeError";

  constructor(
    /** The encoding the bytes were decoded as. */
    readonly format: Format,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`malformed ${format} frame: ${message}`, options);
  }
}

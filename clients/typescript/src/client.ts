/**
 * The client API: {@link Subscriber} follows a stream, {@link Producer} publishes to
 * one. Both work in browsers and Node.
 *
 * @module
 */

export {
  Subscriber,
  type ConnectionStatus,
  type KeyTransport,
  type Logger,
  type ResyncReason,
  type StatusChange,
  type SubscriberEvent,
  type SubscriberEvents,
  type SubscriberOptions,
  type SubscriberStats,
  type UpdateInfo,
} from "./subscriber.js";
export {
  IngestStream,
  Producer,
  PublishError,
  type IngestEvents,
  type IngestRejection,
  type ProducerOptions,
  type PublishResult,
} from "./producer.js";
export { ConnectError, type ConnectErrorInit, type ConnectErrorKind } from "./errors.js";
export { PERMANENT_CLOSE_CODES, parseRetryAfter, redactUrl } from "./connection.js";
export { checkEpsilon, fieldsHaveBody, parseFields, subscriptionUrl } from "./url.js";
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export type { WebSocketConstructor, WebSocketLike } from "./websocket.js";

/**
 * The client API: {@link Subscriber} follows a stream, {@link Producer} publishes to
 * one. Both work in browsers and Node (Node 20: pass or install the `ws` package).
 *
 * @module
 */

export {
  Subscriber,
  type ResyncReason,
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
export { backoffDelay, type BackoffOptions } from "./backoff.js";
export type { WebSocketConstructor, WebSocketLike } from "./websocket.js";

/**
 * The metrics every connection reports, server and client alike. Read them with `Metric.value` or export them
 * with any Effect metrics exporter.
 *
 * @since 0.1.0
 */
import { Metric } from "effect"

/**
 * Connections open right now (goes up and down).
 *
 * @example
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { ChatMetrics } from "effect-asynchat"
 *
 * const open = Effect.map(Metric.value(ChatMetrics.connectionsOpen), (state) => state.count)
 * ```
 *
 * @category metrics
 * @since 0.1.0
 */
export const connectionsOpen = Metric.counter("effect_asynchat_connections_open", {
  description: "Connections open right now"
})

/**
 * Connections accepted or opened since start.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { ChatMetrics } from "effect-asynchat"
 *
 * const total = Metric.value(ChatMetrics.connectionsTotal)
 * ```
 *
 * @category metrics
 * @since 0.1.0
 */
export const connectionsTotal = Metric.counter("effect_asynchat_connections_total", {
  description: "Connections accepted or opened",
  incremental: true
})

/**
 * Connections refused because the server was at `maxConnections`.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { ChatMetrics } from "effect-asynchat"
 *
 * const refused = Metric.value(ChatMetrics.connectionsRejected)
 * ```
 *
 * @category metrics
 * @since 0.1.0
 */
export const connectionsRejected = Metric.counter("effect_asynchat_connections_rejected", {
  description: "Connections refused at maxConnections",
  incremental: true
})

/**
 * Bytes received. Like `bytesOut` and `framesIn`, added up per connection and reported once per scheduler turn
 * (a busy server would otherwise spend more on its metrics than on framing small requests).
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { ChatMetrics } from "effect-asynchat"
 *
 * const received = Metric.value(ChatMetrics.bytesIn)
 * ```
 *
 * @category metrics
 * @since 0.1.0
 */
export const bytesIn = Metric.counter("effect_asynchat_bytes_in", { description: "Bytes received", incremental: true })

/**
 * Bytes handed to the transport.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { ChatMetrics } from "effect-asynchat"
 *
 * const sent = Metric.value(ChatMetrics.bytesOut)
 * ```
 *
 * @category metrics
 * @since 0.1.0
 */
export const bytesOut = Metric.counter("effect_asynchat_bytes_out", { description: "Bytes sent", incremental: true })

/**
 * Frames (or machine messages) delivered to handlers.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { ChatMetrics } from "effect-asynchat"
 *
 * const frames = Metric.value(ChatMetrics.framesIn)
 * ```
 *
 * @category metrics
 * @since 0.1.0
 */
export const framesIn = Metric.counter("effect_asynchat_frames_in", {
  description: "Frames or messages delivered to handlers",
  incremental: true
})

/**
 * Connections that ended in an error, by `reason`: a `ChatError` reason tag (`FrameTooLong`, `IdleTimeout`,
 * ...), `HandlerFailed` for a handler's own typed error, or `Defect`.
 *
 * @example
 * ```ts
 * import { Metric } from "effect"
 * import { ChatMetrics } from "effect-asynchat"
 *
 * const tooLong = Metric.value(Metric.withAttributes(ChatMetrics.errors, { reason: "FrameTooLong" }))
 * ```
 *
 * @category metrics
 * @since 0.1.0
 */
export const errors = Metric.counter("effect_asynchat_errors", {
  description: "Connections ended by an error, by reason",
  incremental: true
})

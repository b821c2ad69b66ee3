/**
 * effect-asynchat: asyncore/asynchat's channels, terminators and producers on Effect v4.
 *
 * @since 0.1.0
 */

/**
 * asynchat's imperative style: a handler that switches terminators as frames arrive.
 *
 * @since 0.1.0
 */
export * as AsyncChat from "./AsyncChat.ts"

/**
 * A channel map across processes and machines, over Redis pub/sub: broadcast, presence, send to a connection.
 *
 * @since 0.1.0
 */
export * as ChannelMap from "./ChannelMap.ts"

/**
 * The connection handle a handler talks through.
 *
 * @since 0.1.0
 */
export * as Chat from "./Chat.ts"

/**
 * Clients over TCP, Unix sockets, Node Duplexes and the in-memory transport.
 *
 * @since 0.1.0
 */
export * as ChatClient from "./ChatClient.ts"

/**
 * The one error type of a connection, with a reason union.
 *
 * @since 0.1.0
 */
export * as ChatError from "./ChatError.ts"

/**
 * Connection metrics.
 *
 * @since 0.1.0
 */
export * as ChatMetrics from "./ChatMetrics.ts"

/**
 * Servers: a supervised fiber per connection, limits, graceful shutdown.
 *
 * @since 0.1.0
 */
export * as ChatServer from "./ChatServer.ts"

/**
 * The limits of one connection, shared by servers and clients.
 *
 * @since 0.1.0
 */
export * as ConnectionOptions from "./ConnectionOptions.ts"

/**
 * Terminator framing as a Stream combinator.
 *
 * @since 0.1.0
 */
export * as Framing from "./Framing.ts"

/**
 * Where a server's connections come from: TCP, Unix sockets.
 *
 * @since 0.1.0
 */
export * as Listener from "./Listener.ts"

/**
 * The PROXY protocol (v1 and v2): a listener's `proxyProtocol` options and the header's decoder.
 *
 * @since 0.1.0
 */
export * as ProxyProtocol from "./ProxyProtocol.ts"

/**
 * Producers for `Chat.pushStream`.
 *
 * @since 0.1.0
 */
export * as Producer from "./Producer.ts"

/**
 * Protocols: framing plus a handler: `forEach`, `forEachBatch`, `make`.
 *
 * @since 0.1.0
 */
export * as Protocol from "./Protocol.ts"

/**
 * Telemetry export: OTLP/HTTP traces, metrics and logs, and a Prometheus `/metrics` endpoint.
 *
 * @since 0.1.0
 */
export * as Telemetry from "./Telemetry.ts"

/**
 * What ends a frame: a delimiter, a byte count, or none.
 *
 * @since 0.1.0
 */
export * as Terminator from "./Terminator.ts"

/**
 * A server on every core: worker processes sharing one port, supervised and restarted.
 *
 * @since 0.1.0
 */
export * as Workers from "./Workers.ts"

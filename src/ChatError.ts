/**
 * The one error type of a connection, with a `reason` union, in place of asyncore's `handle_error`.
 *
 * A protocol catches it by tag (`Effect.catchTag("ChatError", ...)`) or one reason at a time
 * (`Effect.catchReason("ChatError", "FrameTooLong", ...)`), answers (`-ERR line too long`, `400 Bad Request`)
 * and closes; what it does not catch is logged with the connection's id and peer and closes that connection
 * only.
 *
 * @since 0.1.0
 */
import { Duration, Predicate, Schema } from "effect"
import { FrameTooLong } from "./Framing.ts"
import { InvalidTerminator } from "./Terminator.ts"

/** What went wrong under `cause`, for a message: its own message when it has one. */
const detailOf = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/**
 * No byte arrived for `timeout` while the connection waited for input.
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.IdleTimeout({ timeout: Duration.seconds(30) }).message // "No input for 30 seconds"
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class IdleTimeout extends Schema.TaggedError<IdleTimeout>()("IdleTimeout", {
  timeout: Schema.Duration
}) {
  override get message(): string {
    return `No input for ${Duration.format(this.timeout)}`
  }
}

/**
 * A frame started but did not complete within `timeout` (a slowloris peer).
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.FrameTimeout({ timeout: Duration.seconds(10) }).message // "Frame not complete after 10 seconds"
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class FrameTimeout extends Schema.TaggedError<FrameTimeout>()("FrameTimeout", {
  timeout: Schema.Duration
}) {
  override get message(): string {
    return `Frame not complete after ${Duration.format(this.timeout)}`
  }
}

/**
 * The peer took none of our output for `timeout`: it stopped reading, and its window stayed closed.
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.WriteTimeout({ timeout: Duration.minutes(1) }).message // "Output not taken for 1 minute"
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class WriteTimeout extends Schema.TaggedError<WriteTimeout>()("WriteTimeout", {
  timeout: Schema.Duration
}) {
  override get message(): string {
    return `Output not taken for ${Duration.format(this.timeout)}`
  }
}

/**
 * Reading from the peer failed (a reset, a transport error). A clean end of input is not an error.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.ReadFailed({ cause: new Error("read ECONNRESET") }).message // "Read failed: read ECONNRESET"
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class ReadFailed extends Schema.TaggedError<ReadFailed>()("ReadFailed", {
  cause: Schema.Defect()
}) {
  override get message(): string {
    return `Read failed: ${detailOf(this.cause)}`
  }
}

/**
 * Writing to the peer failed: it vanished mid-write (`EPIPE`, `ECONNRESET`) or the transport broke.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.WriteFailed({ cause: new Error("write EPIPE") }).message // "Write failed: write EPIPE"
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class WriteFailed extends Schema.TaggedError<WriteFailed>()("WriteFailed", {
  cause: Schema.Defect()
}) {
  override get message(): string {
    return `Write failed: ${detailOf(this.cause)}`
  }
}

/**
 * A stream handed to `pushStream` failed or died; the connection closes, as asynchat's would on an exception
 * in a producer's `more()`.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.ProducerFailed({ cause: "disk gone" }).message // "A producer failed: disk gone"
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class ProducerFailed extends Schema.TaggedError<ProducerFailed>()("ProducerFailed", {
  cause: Schema.Defect()
}) {
  override get message(): string {
    return `A producer failed: ${detailOf(this.cause)}`
  }
}

/**
 * Opening a client connection to `target` failed or timed out.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.ConnectFailed({ target: "127.0.0.1:1", cause: new Error("connect ECONNREFUSED 127.0.0.1:1") })
 *   .message // "Connect to 127.0.0.1:1 failed: connect ECONNREFUSED 127.0.0.1:1"
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class ConnectFailed extends Schema.TaggedError<ConnectFailed>()("ConnectFailed", {
  /** The peer as the connector names it: `127.0.0.1:7000`, `unix:/tmp/s.sock`, `pipe:stdio`. */
  target: Schema.String,
  cause: Schema.Defect()
}) {
  override get message(): string {
    return `Connect to ${this.target} failed: ${detailOf(this.cause)}`
  }
}

/**
 * A TLS handshake failed: `chat.startTls` on a connection (the peer spoke no TLS, a certificate was refused), or
 * asked of a connection already over TLS. The connection is closed.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.HandshakeFailed({ cause: new Error("wrong version number") }).message
 * // "TLS handshake failed: wrong version number"
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class HandshakeFailed extends Schema.TaggedError<HandshakeFailed>()("HandshakeFailed", {
  cause: Schema.Defect()
}) {
  override get message(): string {
    return `TLS handshake failed: ${detailOf(this.cause)}`
  }
}

/**
 * A connection to a listener with `proxyProtocol` did not begin with a valid PROXY header: none, a malformed one,
 * one over its length bound, or one not complete within the listener's timeout. The connection is closed.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.ProxyHeaderInvalid({ detail: "PROXY v1 header longer than 107 bytes" }).message
 * // "Invalid PROXY header: PROXY v1 header longer than 107 bytes"
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class ProxyHeaderInvalid extends Schema.TaggedError<ProxyHeaderInvalid>()("ProxyHeaderInvalid", {
  detail: Schema.String
}) {
  override get message(): string {
    return `Invalid PROXY header: ${this.detail}`
  }
}

/**
 * A connection to a listener with `proxyProtocol` came from `peer`, which is not one of its trusted proxies: it is
 * refused before a byte of it is read (a receiver must never take a PROXY header from an untrusted source).
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.ProxyUntrusted({ peer: "203.0.113.7:51000" }).message
 * // "Connection from 203.0.113.7:51000, which is not a trusted proxy"
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class ProxyUntrusted extends Schema.TaggedError<ProxyUntrusted>()("ProxyUntrusted", {
  peer: Schema.String
}) {
  override get message(): string {
    return `Connection from ${this.peer}, which is not a trusted proxy`
  }
}

/**
 * Why a connection failed.
 *
 * @example
 * ```ts
 * import type { ChatError } from "effect-asynchat"
 *
 * const retryable = (reason: ChatError.Reason) => reason._tag === "ConnectFailed"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Reason =
  | FrameTooLong
  | InvalidTerminator
  | IdleTimeout
  | FrameTimeout
  | WriteTimeout
  | ReadFailed
  | WriteFailed
  | ProducerFailed
  | ConnectFailed
  | HandshakeFailed
  | ProxyHeaderInvalid
  | ProxyUntrusted

/**
 * Marks a `ChatError`, so that `isChatError` recognises one made by another copy of this package.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * const error: unknown = new ChatError.ChatError({ reason: new ChatError.ProducerFailed({ cause: "gone" }) })
 * const marked = typeof error === "object" && error !== null && ChatError.TypeId in error // true
 * ```
 *
 * @category symbols
 * @since 0.1.0
 */
export const TypeId = "~effect-asynchat/ChatError" as const

/**
 * A connection's typed error.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Chat, ChatError } from "effect-asynchat"
 *
 * // answer an over-long line, then close
 * const lines = (frames: Stream.Stream<Uint8Array, ChatError.ChatError>) =>
 *   Stream.runForEach(frames, (line) => Chat.push(line, "\n")).pipe(
 *     Effect.catchReason("ChatError", "FrameTooLong", () => Chat.push("-ERR line too long\n").pipe(
 *       Effect.andThen(Chat.closeWhenDone)
 *     ))
 *   )
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class ChatError extends Schema.TaggedError<ChatError>()("ChatError", {
  reason: Schema.Union([
    FrameTooLong,
    InvalidTerminator,
    IdleTimeout,
    FrameTimeout,
    WriteTimeout,
    ReadFailed,
    WriteFailed,
    ProducerFailed,
    ConnectFailed,
    HandshakeFailed,
    ProxyHeaderInvalid,
    ProxyUntrusted
  ])
}) {
  readonly [TypeId]: typeof TypeId = TypeId
  override get message(): string {
    return this.reason.message
  }
}

/**
 * True for a `ChatError`.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * ChatError.isChatError(new Error("x")) // false
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isChatError = (u: unknown): u is ChatError => Predicate.hasProperty(u, TypeId)

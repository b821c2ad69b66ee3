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
import { Schema } from "effect"
import { FrameTooLong, FramingError } from "./Framing.ts"
import { InvalidTerminator } from "./Terminator.ts"

/**
 * No byte arrived for `timeout` while the connection waited for input.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.IdleTimeout({ timeout: "30 seconds", message: "No input for 30 seconds" })
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class IdleTimeout extends Schema.TaggedError<IdleTimeout>()("IdleTimeout", {
  timeout: Schema.String,
  message: Schema.String
}) {}

/**
 * A frame started but did not complete within `timeout` (a slowloris peer).
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.FrameTimeout({ timeout: "10 seconds", message: "Frame not complete after 10 seconds" })
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class FrameTimeout extends Schema.TaggedError<FrameTimeout>()("FrameTimeout", {
  timeout: Schema.String,
  message: Schema.String
}) {}

/**
 * The peer took none of our output for `timeout`: it stopped reading, and its window stayed closed.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.WriteTimeout({ timeout: "1 minute", message: "Output not taken for 1 minute" })
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class WriteTimeout extends Schema.TaggedError<WriteTimeout>()("WriteTimeout", {
  timeout: Schema.String,
  message: Schema.String
}) {}

/**
 * Reading from the peer failed (a reset, a transport error). A clean end of input is not an error.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.ReadFailed({ cause: new Error("ECONNRESET"), message: "Read failed: ECONNRESET" })
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class ReadFailed extends Schema.TaggedError<ReadFailed>()("ReadFailed", {
  cause: Schema.Defect(),
  message: Schema.String
}) {}

/**
 * Writing to the peer failed: it vanished mid-write (`EPIPE`, `ECONNRESET`) or the transport broke.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.WriteFailed({ cause: new Error("EPIPE"), message: "Write failed: EPIPE" })
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class WriteFailed extends Schema.TaggedError<WriteFailed>()("WriteFailed", {
  cause: Schema.Defect(),
  message: Schema.String
}) {}

/**
 * A stream handed to `pushStream` failed or died; the connection closes, as asynchat's would on an exception
 * in a producer's `more()`.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.ProducerFailed({ cause: "disk gone", message: "A producer failed" })
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class ProducerFailed extends Schema.TaggedError<ProducerFailed>()("ProducerFailed", {
  cause: Schema.Defect(),
  message: Schema.String
}) {}

/**
 * Opening a client connection failed or timed out.
 *
 * @example
 * ```ts
 * import { ChatError } from "effect-asynchat"
 *
 * new ChatError.ConnectFailed({ cause: new Error("ECONNREFUSED"), message: "Connect to 127.0.0.1:1 failed" })
 * ```
 *
 * @category reasons
 * @since 0.1.0
 */
export class ConnectFailed extends Schema.TaggedError<ConnectFailed>()("ConnectFailed", {
  cause: Schema.Defect(),
  message: Schema.String
}) {}

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
    ConnectFailed
  ])
}) {
  override get message(): string {
    return this.reason.message
  }
}

/**
 * Re-tags a `Framing` failure as a connection error, keeping its reason.
 *
 * @example
 * ```ts
 * import { ChatError, Framing } from "effect-asynchat"
 *
 * const error = ChatError.fromFraming(
 *   new Framing.FramingError({ reason: new Framing.FrameTooLong({ limit: 8, message: "too long" }) })
 * )
 * error.reason._tag // "FrameTooLong"
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromFraming = (error: FramingError): ChatError => new ChatError({ reason: error.reason })

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
export const isChatError = (u: unknown): u is ChatError => u instanceof ChatError

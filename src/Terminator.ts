/**
 * What ends a frame: asynchat's `set_terminator` argument, made explicit and checked.
 *
 * - `delimiter(bytes | string)`: the frame ends where the delimiter appears (any length, found across chunk
 *   boundaries, self-overlapping delimiters included); the delimiter itself is not part of the frame.
 * - `length(n)`: the frame is exactly the next `n` bytes. `length(0)` is an immediate empty frame.
 * - `none`: no frame end at all; bytes are passed on as they arrive.
 *
 * Where asynchat treats `b""`, `0` and `None` alike as "collect forever", and accepts a `str` only to fail
 * later, these constructors refuse an empty delimiter and a negative, fractional or non-finite count at once,
 * with an {@link InvalidTerminator} error.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { Buffer } from "node:buffer"

/**
 * A frame ends where these bytes appear in the input.
 *
 * @example
 * ```ts
 * import { Terminator } from "effect-asynchat"
 *
 * const blankLine: Terminator.Delimiter = Terminator.delimiter("\r\n\r\n")
 * blankLine.bytes.length // 4
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Delimiter {
  readonly _tag: "Delimiter"
  /** A private copy of the delimiter: never empty. */
  readonly bytes: Buffer
}

/**
 * A frame is exactly the next `length` bytes.
 *
 * @example
 * ```ts
 * import { Terminator } from "effect-asynchat"
 *
 * const header: Terminator.Length = Terminator.length(4)
 * header.length // 4
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Length {
  readonly _tag: "Length"
  /** A non-negative safe integer. */
  readonly length: number
}

/**
 * No frame end: bytes are passed on as they arrive.
 *
 * @example
 * ```ts
 * import { Terminator } from "effect-asynchat"
 *
 * const raw: Terminator.None = Terminator.none
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface None {
  readonly _tag: "None"
}

/**
 * One of the three asynchat terminator kinds.
 *
 * @example
 * ```ts
 * import { Terminator } from "effect-asynchat"
 *
 * const describe = (t: Terminator.Terminator): string => {
 *   switch (t._tag) {
 *     case "Delimiter": return `until ${JSON.stringify(t.bytes.toString("latin1"))}`
 *     case "Length": return `${t.length} bytes`
 *     case "None": return "as it arrives"
 *   }
 * }
 * describe(Terminator.crlf) // 'until "\\r\\n"'
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Terminator = Delimiter | Length | None

/**
 * Thrown by the constructors for a terminator asynchat would silently turn into "collect forever", and
 * reported by `Framing` when a state machine picks one.
 *
 * @example
 * ```ts
 * import { Terminator } from "effect-asynchat"
 *
 * try {
 *   Terminator.length(-1)
 * } catch (error) {
 *   if (error instanceof Terminator.InvalidTerminator) console.log(error.message)
 * }
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidTerminator extends Schema.TaggedError<InvalidTerminator>()("InvalidTerminator", {
  message: Schema.String
}) {}

/**
 * A delimiter terminator. A string is encoded as UTF-8; the bytes are copied, so later changes to the
 * argument do not affect the terminator.
 *
 * @throws {InvalidTerminator} for an empty delimiter.
 *
 * @example
 * ```ts
 * import { Terminator } from "effect-asynchat"
 *
 * const headersEnd = Terminator.delimiter("\r\n\r\n")
 * const nul = Terminator.delimiter(new Uint8Array([0]))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const delimiter = (bytes: Uint8Array | string): Delimiter => {
  const copy = typeof bytes === "string" ? Buffer.from(bytes, "utf8") : Buffer.from(bytes)
  if (copy.length === 0) {
    throw new InvalidTerminator({ message: "A delimiter must not be empty (asynchat would collect forever)" })
  }
  return { _tag: "Delimiter", bytes: copy }
}

/**
 * A byte-count terminator: the next frame is exactly `length` bytes. `length(0)` is an immediate empty frame,
 * not asynchat's "collect forever".
 *
 * @throws {InvalidTerminator} for a negative, fractional, non-finite or unsafe count.
 *
 * @example
 * ```ts
 * import { Terminator } from "effect-asynchat"
 *
 * // RESP bulk string "$5\r\nhello\r\n": five bytes plus the CRLF
 * const bulk = Terminator.length(5 + 2)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const length = (length: number): Length => {
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new InvalidTerminator({ message: `A length must be a non-negative integer, got ${String(length)}` })
  }
  return { _tag: "Length", length }
}

/**
 * No terminator: every byte is passed on as it arrives, in the chunks it arrived in.
 *
 * @example
 * ```ts
 * import { Terminator } from "effect-asynchat"
 *
 * // after an HTTP/1.0 request is complete, ignore whatever else the client sends
 * const rest = Terminator.none
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const none: None = { _tag: "None" }

/**
 * `"\n"`: the usual line terminator.
 *
 * @example
 * ```ts
 * import { Stream } from "effect"
 * import { Framing, Terminator } from "effect-asynchat"
 *
 * const lines = Stream.make(new TextEncoder().encode("a\nb\n")).pipe(Framing.frames(Terminator.lf))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const lf: Delimiter = delimiter("\n")

/**
 * `"\r\n"`: the line terminator of HTTP, SMTP and RESP.
 *
 * @example
 * ```ts
 * import { Stream } from "effect"
 * import { Framing, Terminator } from "effect-asynchat"
 *
 * const commands = Stream.make(new TextEncoder().encode("PING\r\n")).pipe(Framing.frames(Terminator.crlf))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const crlf: Delimiter = delimiter("\r\n")

/**
 * A readable rendering for logs and error messages.
 *
 * @example
 * ```ts
 * import { Terminator } from "effect-asynchat"
 *
 * Terminator.format(Terminator.crlf) // 'delimiter "\\r\\n"'
 * Terminator.format(Terminator.length(7)) // "length 7"
 * ```
 *
 * @category formatting
 * @since 0.1.0
 */
export const format = (self: Terminator): string => {
  switch (self._tag) {
    case "Delimiter":
      return `delimiter ${JSON.stringify(self.bytes.toString("latin1"))}`
    case "Length":
      return `length ${self.length}`
    case "None":
      return "none"
  }
}

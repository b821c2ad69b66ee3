/**
 * Producers for `Chat.pushStream`: asynchat's `push_with_producer` takes any object with `more()`; here a
 * producer is a `Stream<Uint8Array>`, pulled by the connection's writer only as fast as the peer reads.
 *
 * @since 0.1.0
 */
import { Stream } from "effect"
import { Buffer } from "node:buffer"

/**
 * asynchat's `simple_producer`: `data` handed out in pieces of `bufferSize` bytes (default 512), the last one
 * shorter. A string is encoded as UTF-8.
 *
 * @example
 * ```ts
 * import { Chat, Producer } from "effect-asynchat"
 *
 * // the ECHO client's body, in 64-byte pieces
 * const sendBody = (body: Uint8Array) => Chat.pushStream(Producer.simple(body, 64))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const simple = (data: Uint8Array | string, bufferSize = 512): Stream.Stream<Uint8Array> => {
  if (!Number.isSafeInteger(bufferSize) || bufferSize < 1) {
    throw new RangeError(`bufferSize must be a positive integer, got ${bufferSize}`)
  }
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data
  return Stream.fromIterable({
    *[Symbol.iterator]() {
      for (let i = 0; i < bytes.length; i += bufferSize) yield bytes.subarray(i, i + bufferSize)
    }
  })
}

/**
 * A producer from asynchat's protocol: `more()` is called until it returns an empty buffer.
 *
 * @example
 * ```ts
 * import { Producer } from "effect-asynchat"
 *
 * let n = 0
 * const countdown = Producer.fromMore(() => new TextEncoder().encode(n < 3 ? `${3 - n++}\n` : ""))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromMore = (more: () => Uint8Array): Stream.Stream<Uint8Array> =>
  Stream.fromIterable({
    *[Symbol.iterator]() {
      for (let chunk = more(); chunk.length > 0; chunk = more()) yield chunk
    }
  })

/**
 * The limits of one connection, shared by servers (`ChatServer.Options`) and clients (`ChatClient.Options`).
 *
 * @since 0.1.0
 */
import type { Duration } from "effect"

/**
 * Limits of one connection, shared by servers and clients. Every field has a default; `Duration.infinity` turns a
 * timeout off.
 *
 * @example
 * ```ts
 * import type { ConnectionOptions } from "effect-asynchat"
 *
 * const bulk: ConnectionOptions.ConnectionOptions = { maxFrameLength: 1024 * 1024, highWaterMark: 256 * 1024 }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ConnectionOptions {
  /** The longest frame, excluding its delimiter (default 64 KiB); `Infinity` only when asked for. */
  readonly maxFrameLength?: number | undefined
  /** Fail with `IdleTimeout` when no byte arrives for this long while input is awaited (default 5 minutes). */
  readonly idleTimeout?: Duration.Input | undefined
  /** Fail with `FrameTimeout` when a frame is not complete this long after its first byte (default 30 s). */
  readonly frameTimeout?: Duration.Input | undefined
  /**
   * Fail with `WriteTimeout` when the peer takes none of our waiting output for this long: it stopped reading
   * (default 1 minute). A slow peer that keeps taking bytes is not timed out (over a Node stream; another
   * transport's write must complete within it). Also bounds how long `closeWhenDone` waits for the peer to take
   * the rest. Checked only while a write waits, so it costs nothing otherwise.
   */
  readonly writeTimeout?: Duration.Input | undefined
  /**
   * Output queued beyond this many bytes makes `push` wait (default 64 KiB). Bytes the socket has taken are no
   * longer queued: its own write buffer (Node's high-water mark, 64 KiB) and the kernel's come on top of it.
   */
  readonly highWaterMark?: number | undefined
  /** ... until the writer has drained it to this many (default 32 KiB). */
  readonly lowWaterMark?: number | undefined
  /**
   * What `offer` and `broadcast` may queue without waiting, beyond the high-water mark (default 16 times it:
   * 1 MiB); a broadcast recipient over it is a slow consumer and is closed.
   */
  readonly outputLimit?: number | undefined
}

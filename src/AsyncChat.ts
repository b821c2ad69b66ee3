/**
 * asynchat's imperative style: `foundTerminator(frame, state)` runs for every frame, in order, and may call
 * {@link setTerminator} to cut the bytes that follow (already received or not) differently, as asynchat's
 * `set_terminator` inside `found_terminator` does. Frames are cut one at a time, so the switch is exact.
 *
 * {@link make} builds such a protocol. Its handler, and only it, has the {@link AsyncChat} service in its
 * context beside `Chat`: {@link setTerminator}, {@link terminator} and {@link discardBuffers}. A protocol framed
 * up front (`Protocol.forEach` and the rest) has no terminator to change, and a handler of one that asks for
 * `AsyncChat` does not type-check.
 *
 * A `Framing.Machine` does the same job as a pure function of the frames, testable without a socket; this
 * module is for code that reads best as asynchat's.
 *
 * @since 0.1.0
 */
import { Context, Effect, type Scope, type Stream } from "effect"
import type { Chat } from "./Chat.ts"
import type { ChatError } from "./ChatError.ts"
import type * as Framing from "./Framing.ts"
import * as internal from "./internal/protocol.ts"
import type { Protocol } from "./Protocol.ts"
import type * as Terminator from "./Terminator.ts"

/**
 * What an `AsyncChat.make` handler can do beyond `Chat`: asynchat's `get_terminator`, `set_terminator` and
 * `discard_buffers`.
 *
 * @example
 * ```ts
 * import { AsyncChat, Terminator } from "effect-asynchat"
 *
 * const readCount = (chat: AsyncChat.AsyncChatShape, count: number) => chat.setTerminator(Terminator.length(count))
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface AsyncChatShape {
  /** The terminator for the next frame. */
  readonly terminator: Effect.Effect<Terminator.Terminator>
  /**
   * Sets the terminator for the next frame: asynchat's `set_terminator`. It applies to the bytes already
   * received after the current frame as well as to those still to come.
   */
  readonly setTerminator: (terminator: Terminator.Terminator) => Effect.Effect<void>
  /** Drops queued output and the bytes of the frame being received: emergencies only. */
  readonly discardBuffers: Effect.Effect<void>
}

/**
 * The current `AsyncChat.make` connection's framing, provided to its handler beside `Chat`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { AsyncChat } from "effect-asynchat"
 *
 * const current = Effect.flatMap(AsyncChat.AsyncChat, (chat) => chat.terminator)
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class AsyncChat extends Context.Service<AsyncChat, AsyncChatShape>()("effect-asynchat/AsyncChat") {}

/**
 * Sets the terminator of the current `AsyncChat.make` connection for the next frame.
 *
 * @example
 * ```ts
 * import { AsyncChat, Terminator } from "effect-asynchat"
 *
 * const readBody = (length: number) => AsyncChat.setTerminator(Terminator.length(length))
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const setTerminator = (terminator: Terminator.Terminator): Effect.Effect<void, never, AsyncChat> =>
  AsyncChat.use((chat) => chat.setTerminator(terminator))

/**
 * The terminator of the current `AsyncChat.make` connection for the next frame.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { AsyncChat } from "effect-asynchat"
 *
 * const inBody = Effect.map(AsyncChat.terminator, (terminator) => terminator._tag === "Length")
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const terminator: Effect.Effect<Terminator.Terminator, never, AsyncChat> = AsyncChat.use((chat) =>
  chat.terminator
)

/**
 * Drops the current `AsyncChat.make` connection's queued output and the bytes of the frame being received.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { AsyncChat, Chat } from "effect-asynchat"
 *
 * const startOver = AsyncChat.discardBuffers.pipe(Effect.andThen(Chat.push("-ERR discarded\r\n")))
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const discardBuffers: Effect.Effect<void, never, AsyncChat> = AsyncChat.use((chat) => chat.discardBuffers)

/**
 * asynchat's imperative style: `foundTerminator` runs for every frame, in order, and may call
 * {@link setTerminator} to cut the bytes that follow (already received or not) differently. Frames that end
 * without a terminator (under `Terminator.none`, or left over at end of input) arrive with `terminated` false,
 * where asynchat would have handed them to `collect_incoming_data`. What asynchat keeps on `self` lives in
 * `state`: made fresh for every connection by `initialState`, and handed to `onConnect` (asynchat's
 * `handle_connect`) and to every `foundTerminator` call. It ends at the end of input and fails as the input
 * fails, with `ChatError`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { AsyncChat, Chat, Terminator } from "effect-asynchat"
 *
 * // the asynchat HTTP handler: headers, then a Content-Length body, then ignore the rest
 * const Http = AsyncChat.make({
 *   terminator: Terminator.delimiter("\r\n\r\n"),
 *   initialState: () => ({ head: "" }),
 *   foundTerminator: Effect.fn(function*(frame, state) {
 *     const current = yield* AsyncChat.terminator
 *     if (current._tag === "Delimiter") {
 *       state.head = new TextDecoder().decode(frame.bytes)
 *       const length = /content-length: *(\d+)/i.exec(state.head)?.[1]
 *       if (length !== undefined) return yield* AsyncChat.setTerminator(Terminator.length(Number(length)))
 *     }
 *     if (current._tag !== "None") {
 *       yield* AsyncChat.setTerminator(Terminator.none)
 *       yield* Chat.push(`HTTP/1.0 200 OK\r\n\r\n${state.head.split("\r\n")[0]}`)
 *       yield* Chat.closeWhenDone
 *     }
 *   })
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = <E, R, S = void, E2 = never, R2 = never>(options: {
  readonly terminator: Terminator.Terminator
  readonly initialState?: (() => S) | undefined
  /** asynchat's `handle_connect`: runs once, before the first frame (a client that speaks first pushes here). */
  readonly onConnect?: ((state: S) => Effect.Effect<unknown, E2, R2>) | undefined
  readonly foundTerminator: (frame: Framing.Frame, state: S) => Effect.Effect<unknown, E, R>
}): Protocol<E | E2 | ChatError, Exclude<R | R2, Chat | AsyncChat | Scope.Scope>> =>
  internal.make(
    { _tag: "Exact", terminator: options.terminator },
    (frames: Stream.Stream<Framing.Frame, ChatError>) => {
      const state = options.initialState?.() as S
      const run = internal.forEachOf(frames, (frame) => options.foundTerminator(frame, state))
      return options.onConnect === undefined ? run : Effect.andThen(options.onConnect(state), run)
    }
  ) as Protocol<E | E2 | ChatError, Exclude<R | R2, Chat | AsyncChat | Scope.Scope>>

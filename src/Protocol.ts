/**
 * A protocol is a pipeline: bytes → frames (a terminator) or typed messages (a `Framing.Machine`) → a handler
 * that answers through the `Chat` handle. The same protocol runs on a TCP or Unix server, a client, any Node
 * Duplex, or the in-memory test transport.
 *
 * Four ways to write one:
 * - {@link frames}: one terminator for every frame; the handler reads the frames one by one.
 * - {@link machine}: a pure state machine switches terminators and emits typed messages (fast, exact).
 * - {@link batches}: either of these for hot paths: each element is the array of frames or messages one read
 *   completed.
 * - {@link asyncChat}: asynchat's imperative style: `foundTerminator(frame)` may call `Chat.setTerminator`,
 *   which applies to the bytes already received. Frames are cut one at a time so the switch is exact.
 *
 * A handler reads its input with {@link runForEach} (`Stream.runForEach` with the same semantics, which drives
 * the connection's input without the Stream machinery) or with any Stream operator.
 *
 * @since 0.1.0
 */
import { type Cause, Effect, Pull, Result, type Scope, Stream } from "effect"
import { dual } from "effect/Function"
import type { Chat } from "./Chat.ts"
import type { ChatError } from "./ChatError.ts"
import type * as Framing from "./Framing.ts"
import * as Input from "./internal/input.ts"
import * as Terminator from "./Terminator.ts"

/**
 * How a protocol cuts its input.
 *
 * @example
 * ```ts
 * import { Protocol, Terminator } from "effect-asynchat"
 *
 * const lines: Protocol.Mode<never> = { _tag: "Fixed", terminator: Terminator.lf }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Mode<EI> =
  | { readonly _tag: "Fixed"; readonly terminator: Terminator.Terminator; readonly batched?: boolean | undefined }
  | { readonly _tag: "Exact"; readonly terminator: Terminator.Terminator }
  | {
    readonly _tag: "Machine"
    readonly machine: Framing.Machine<any, any, EI>
    readonly batched?: boolean | undefined
  }

/**
 * A protocol: its framing and its handler. `E` and `R` are the handler's errors and requirements; `Chat` and
 * `Scope` are provided by the connection: the handler runs in the connection's scope, so a resource it
 * acquires (`Effect.acquireRelease`, `Effect.addFinalizer`) is released when the connection closes, with no
 * `Effect.scoped` needed.
 *
 * @example
 * ```ts
 * import { Stream } from "effect"
 * import { Chat, type ChatError, Protocol, Terminator } from "effect-asynchat"
 *
 * const Echo: Protocol.Protocol<ChatError.ChatError, never> = Protocol.frames(
 *   Terminator.lf,
 *   (lines) => Stream.runForEach(lines, (line) => Chat.push(line.bytes, "\n"))
 * )
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Protocol<E, R> {
  readonly mode: Mode<unknown>
  readonly handler: (input: Stream.Stream<any, any>) => Effect.Effect<unknown, E, R | Chat | Scope.Scope>
}

/** A fixed `length(0)` would cut empty frames forever without consuming a byte. */
const refuseEndlessZero = (terminator: Terminator.Terminator): void => {
  if (terminator._tag === "Length" && terminator.length === 0) {
    throw new Terminator.InvalidTerminator({ message: "A fixed length(0) terminator would emit empty frames forever" })
  }
}

/**
 * A protocol with one terminator for every frame. The handler receives the frames as a Stream that fails with
 * `ChatError` (a frame over `maxFrameLength`, a timeout, a read error) and ends at the peer's end of input,
 * after a final unterminated frame if bytes were left over.
 *
 * @throws {Terminator.InvalidTerminator} for `Terminator.length(0)`, which would emit empty frames forever.
 *
 * @example
 * ```ts
 * import { Stream } from "effect"
 * import { Chat, Protocol, Terminator } from "effect-asynchat"
 *
 * const Upper = Protocol.frames(Terminator.crlf, (lines) =>
 *   Stream.runForEach(lines, (line) => Chat.push(new TextDecoder().decode(line.bytes).toUpperCase(), "\r\n")))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const frames = <E, R>(
  terminator: Terminator.Terminator,
  handler: (frames: Stream.Stream<Framing.Frame, ChatError>) => Effect.Effect<unknown, E, R>
): Protocol<E, Exclude<R, Chat | Scope.Scope>> => {
  refuseEndlessZero(terminator)
  return { mode: { _tag: "Fixed", terminator }, handler } as Protocol<E, Exclude<R, Chat | Scope.Scope>>
}

/**
 * {@link frames} or {@link machine}, for hot paths: the handler receives, for every read, the array of frames
 * (or machine messages) it completed, so per-element costs (a Stream pull, an Effect) are paid once per read
 * instead of once per frame, and the answers to a pipelined batch can be pushed together. Reading in several
 * passes still loses nothing: each element is a whole read's frames.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Chat, Protocol, Terminator } from "effect-asynchat"
 *
 * // a line echo that answers each read's lines with one push
 * const EchoLines = Protocol.batches(Terminator.lf, (batches) =>
 *   Effect.flatMap(Chat.Chat, (chat) =>
 *     Stream.runForEach(batches, (lines) => chat.push(...lines.flatMap((line) => [line.bytes, "\n"])))))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const batches: {
  <E, R>(
    terminator: Terminator.Terminator,
    handler: (batches: Stream.Stream<ReadonlyArray<Framing.Frame>, ChatError>) => Effect.Effect<unknown, E, R>
  ): Protocol<E, Exclude<R, Chat | Scope.Scope>>
  <S, A, EI, E, R>(
    machine: Framing.Machine<S, A, EI>,
    handler: (batches: Stream.Stream<ReadonlyArray<A>, ChatError | EI>) => Effect.Effect<unknown, E, R>
  ): Protocol<E, Exclude<R, Chat | Scope.Scope>>
} = (
  framing: Terminator.Terminator | Framing.Machine<any, any, any>,
  handler: Protocol<any, any>["handler"]
): Protocol<any, any> => {
  if ("step" in framing) return { mode: { _tag: "Machine", machine: framing, batched: true }, handler }
  refuseEndlessZero(framing)
  return { mode: { _tag: "Fixed", terminator: framing, batched: true }, handler }
}

/**
 * A protocol framed by a pure state machine. The handler receives the machine's messages; the stream fails
 * with `ChatError` or with the machine's own error.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Chat, Framing, Protocol, Terminator } from "effect-asynchat"
 *
 * // "ECHO <n>\n" then n bytes, echoed back
 * const EchoCommands = Framing.machine<number | undefined, Uint8Array, string>({
 *   initial: undefined,
 *   terminator: (n) => n === undefined ? Terminator.lf : Terminator.length(n),
 *   step: (n, frame) => {
 *     if (n !== undefined) return Framing.next(undefined, frame.bytes)
 *     const m = /^ECHO (\d+)$/.exec(new TextDecoder().decode(frame.bytes))
 *     return m ? Framing.next(Number(m[1])) : Framing.fail(`bad command`)
 *   }
 * })
 * const Echo = Protocol.machine(EchoCommands, (bodies) => Stream.runForEach(bodies, (body) => Chat.push(body)))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const machine = <S, A, EI, E, R>(
  machine: Framing.Machine<S, A, EI>,
  handler: (messages: Stream.Stream<A, ChatError | EI>) => Effect.Effect<unknown, E, R>
): Protocol<E, Exclude<R, Chat | Scope.Scope>> =>
  ({ mode: { _tag: "Machine", machine }, handler }) as Protocol<E, Exclude<R, Chat | Scope.Scope>>

/**
 * asynchat's imperative style: `foundTerminator` runs for every frame, in order, and may call
 * `Chat.setTerminator` to cut the bytes that follow (already received or not) differently. Frames that end
 * without a terminator (under `Terminator.none`, or left over at end of input) arrive with `terminated` false,
 * where asynchat would have handed them to `collect_incoming_data`. What asynchat keeps on `self` lives in
 * `state`: made fresh for every connection by `initialState`, and handed to `onConnect` (asynchat's
 * `handle_connect`) and to every `foundTerminator` call.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat, Protocol, Terminator } from "effect-asynchat"
 *
 * // the asynchat HTTP handler: headers, then a Content-Length body, then ignore the rest
 * const Http = Protocol.asyncChat({
 *   terminator: Terminator.delimiter("\r\n\r\n"),
 *   initialState: () => ({ head: "" }),
 *   foundTerminator: Effect.fn(function*(frame, state) {
 *     const chat = yield* Chat.Chat
 *     const current = yield* chat.terminator
 *     if (current._tag === "Delimiter") {
 *       state.head = new TextDecoder().decode(frame.bytes)
 *       const length = /content-length: *(\d+)/i.exec(state.head)?.[1]
 *       if (length !== undefined) return yield* chat.setTerminator(Terminator.length(Number(length)))
 *     }
 *     if (current._tag !== "None") {
 *       yield* chat.setTerminator(Terminator.none)
 *       yield* chat.push(`HTTP/1.0 200 OK\r\n\r\n${state.head.split("\r\n")[0]}`)
 *       yield* chat.closeWhenDone
 *     }
 *   })
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const asyncChat = <E, R, S = void, E2 = never, R2 = never>(options: {
  readonly terminator: Terminator.Terminator
  readonly initialState?: (() => S) | undefined
  /** asynchat's `handle_connect`: runs once, before the first frame (a client that speaks first pushes here). */
  readonly onConnect?: ((state: S) => Effect.Effect<unknown, E2, R2>) | undefined
  readonly foundTerminator: (frame: Framing.Frame, state: S) => Effect.Effect<unknown, E, R>
}): Protocol<E | E2 | ChatError, Exclude<R | R2, Chat | Scope.Scope>> =>
  ({
    mode: { _tag: "Exact", terminator: options.terminator },
    handler: (frames: Stream.Stream<Framing.Frame, ChatError>) => {
      const state = options.initialState?.() as S
      const run = runForEach(frames, (frame) => options.foundTerminator(frame, state))
      return options.onConnect === undefined ? run : Effect.andThen(options.onConnect(state), run)
    }
  }) as Protocol<E | E2 | ChatError, Exclude<R | R2, Chat | Scope.Scope>>

/**
 * `Stream.runForEach` for a handler's input: `f` runs for every element (a frame, a message, or a read's
 * batch), in order, each once the effect of the one before is done; it ends at the end of input and fails as
 * the input fails. On a connection's own input it drives the connection directly, without the machinery
 * `Stream.runForEach` builds around a stream (a scope, a channel, and their frames on the handler's fiber):
 * a read takes fewer steps, and an idle connection holds about 0.7 KiB less. On any other stream (one the
 * handler made from its input with `Stream.map`, say) it is `Stream.runForEach`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat, Protocol, Terminator } from "effect-asynchat"
 *
 * // a line echo that answers each read's lines with one push
 * const EchoLines = Protocol.batches(Terminator.lf, (batches) =>
 *   Effect.flatMap(Chat.Chat, (chat) =>
 *     Protocol.runForEach(batches, (lines) => chat.push(...lines.flatMap((line) => [line.bytes, "\n"])))))
 * ```
 *
 * @category running
 * @since 0.1.0
 */
export const runForEach: {
  <A, X, E2, R2>(
    f: (a: A) => Effect.Effect<X, E2, R2>
  ): <E, R>(self: Stream.Stream<A, E, R>) => Effect.Effect<void, E | E2, R | R2>
  <A, E, R, X, E2, R2>(
    self: Stream.Stream<A, E, R>,
    f: (a: A) => Effect.Effect<X, E2, R2>
  ): Effect.Effect<void, E | E2, R | R2>
} = dual(2, <A, E, R, X, E2, R2>(
  self: Stream.Stream<A, E, R>,
  f: (a: A) => Effect.Effect<X, E2, R2>
): Effect.Effect<void, E | E2, R | R2> => {
  const pull = Input.pullOf(self as Stream.Stream<A, E>)
  if (pull === undefined) return Stream.runForEach(self, f)
  // a connection's pull hands out one element at a time; `forever` without yields, as Stream.runForEach
  const each = Effect.flatMap(pull, (elements) => f(elements[0]))
  return Effect.catchCause(Effect.forever(each, { disableYield: true }), endOfInput)
})

/**
 * The end of input ends the loop; any other failure goes on, a defect that came with the end too (as
 * `Stream.runForEach` has it). A module function of one argument, which `catchCause` keeps as it is: no closure
 * per connection.
 */
const endOfInput = (cause: Cause.Cause<unknown>): Effect.Effect<void, never> => {
  const rest = Pull.filterDone(cause)
  return Result.isSuccess(rest) ? Effect.void : Effect.failCause(rest.failure as Cause.Cause<never>)
}

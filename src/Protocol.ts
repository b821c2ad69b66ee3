/**
 * A protocol is a pipeline: bytes → frames (a terminator) or typed messages (a `Framing.Machine`, or the faster
 * `Framing.Decoder`) → a handler
 * that answers through the `Chat` handle. The same protocol runs on a TCP or Unix server, a client, any Node
 * Duplex, or the in-memory test transport.
 *
 * - {@link forEach}: the common case: `f` runs for every frame (or machine message), in order; `f` may be made
 *   once per connection by an effect, which can take the `Chat` handle or keep state.
 * - {@link forEachBatch}: the same for hot paths: `f` runs once per read, with the frames (or messages) it
 *   completed, so per-element costs are paid once per read and a pipelined batch is answered with one push.
 * - {@link make}: full control: the handler gets the input as a Stream and does what it likes with it.
 * - `AsyncChat.make`: asynchat's imperative style, where a handler switches terminators as it goes.
 *
 * {@link mapHandler} wraps the effect a connection runs: to answer an input failure before the connection
 * closes, say.
 *
 * @since 0.1.0
 */
import { Effect, type Scope, type Stream } from "effect"
import { dual } from "effect/Function"
import type { Pipeable } from "effect/Pipeable"
import { hasProperty } from "effect/Predicate"
import type * as Types from "effect/Types"
import type { Chat } from "./Chat.ts"
import type { ChatError } from "./ChatError.ts"
import type * as Framing from "./Framing.ts"
import * as internal from "./internal/protocol.ts"
import type * as Terminator from "./Terminator.ts"

const TypeId: "~effect-asynchat/Protocol" = internal.TypeId

/**
 * A protocol: its framing and its handler. `E` and `R` are the handler's errors and requirements; `Chat` and
 * `Scope` are provided by the connection: the handler runs in the connection's scope, so a resource it
 * acquires (`Effect.acquireRelease`, `Effect.addFinalizer`) is released when the connection closes, with no
 * `Effect.scoped` needed.
 *
 * @example
 * ```ts
 * import { Chat, type ChatError, Protocol, Terminator } from "effect-asynchat"
 *
 * const Echo: Protocol.Protocol<ChatError.ChatError, never> = Protocol.forEach(
 *   Terminator.lf,
 *   (line) => Chat.push(line.bytes, "\n")
 * )
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Protocol<out E, out R> extends Pipeable {
  readonly [TypeId]: {
    readonly _E: Types.Covariant<E>
    readonly _R: Types.Covariant<R>
  }
}

/**
 * Whether `u` is a protocol.
 *
 * @example
 * ```ts
 * import { Chat, Protocol, Terminator } from "effect-asynchat"
 *
 * Protocol.isProtocol(Protocol.forEach(Terminator.lf, (line) => Chat.push(line.bytes))) // true
 * Protocol.isProtocol({ terminator: Terminator.lf }) // false
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isProtocol = (u: unknown): u is Protocol<unknown, unknown> => hasProperty(u, TypeId)

/**
 * What runs for each element: a function, or an effect that makes one per connection (to take the `Chat` handle
 * once, or keep the connection's state in its locals).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat, type Framing, type Protocol } from "effect-asynchat"
 *
 * const echo: Protocol.Each<Framing.Frame, never, Chat.Chat> = (line) => Chat.push(line.bytes, "\n")
 * const numbered: Protocol.Each<Framing.Frame, never, Chat.Chat> = Effect.gen(function*() {
 *   const chat = yield* Chat.Chat
 *   let n = 0
 *   return (line) => chat.push(`${++n} `, line.bytes, "\n")
 * })
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Each<A, E, R> =
  | ((element: A) => Effect.Effect<unknown, E, R>)
  | Effect.Effect<(element: A) => Effect.Effect<unknown, E, R>, E, R>

/** The handler of `f`: made once per connection, capturing only `f`. */
const eachOf = <A, E, R>(f: Each<A, E, R>): internal.Handler<E, R> =>
  Effect.isEffect(f)
    ? (input: Stream.Stream<A, any>) => Effect.flatMap(f, (g) => internal.forEachOf(input, g))
    : (input: Stream.Stream<A, any>) => internal.forEachOf(input, f)

/** How a protocol cuts its input: a terminator, a machine or a decoder. */
type Framing_ = Terminator.Terminator | Framing.Machine<any, any, any> | Framing.Decoding<any, any>

/** The mode of `framing`, batched or not; a fixed `length(0)` is refused. */
const modeOf = (framing: Framing_, batched: boolean): internal.Mode<unknown> => {
  if (typeof framing === "function" || "decode" in framing) return { _tag: "Decoder", decoder: framing, batched }
  if ("step" in framing) return { _tag: "Machine", machine: framing, batched }
  internal.refuseEndlessZero(framing)
  return { _tag: "Fixed", terminator: framing, batched }
}

/**
 * A protocol that runs `f` for every frame (with a terminator) or message (with a `Framing.Machine` or a
 * `Framing.Decoder`), in order,
 * each once the effect of the one before is done. It ends at the peer's end of input (after a final
 * unterminated frame, if bytes were left over), and fails as the input fails: with `ChatError` (a frame over
 * `maxFrameLength`, a timeout, a read error) or with the machine's own error. The loop drives the connection's
 * input directly, without a Stream around it. `f` may also be an effect that makes the function once per
 * connection ({@link Each}): to take the `Chat` handle once rather than for every element, or to keep the
 * connection's state in its locals (a function returned from `Effect.gen` needs its parameter's type written
 * out; through `Effect.map` it is inferred).
 *
 * @throws {Terminator.InvalidTerminator} for `Terminator.length(0)`, which would emit empty frames forever.
 *
 * @example
 * ```ts
 * import { Chat, Framing, Protocol, Terminator } from "effect-asynchat"
 *
 * const Upper = Protocol.forEach(Terminator.crlf, (line) =>
 *   Chat.push(new TextDecoder().decode(line.bytes).toUpperCase(), "\r\n"))
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
 * const Echo = Protocol.forEach(EchoCommands, (body) => Chat.push(body))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const forEach: {
  <E, R>(
    terminator: Terminator.Terminator,
    f: Each<Framing.Frame, E, R>
  ): Protocol<E | ChatError, Exclude<R, Chat | Scope.Scope>>
  <S, A, EI, E, R>(
    machine: Framing.Machine<S, A, EI>,
    f: Each<A, E, R>
  ): Protocol<E | ChatError | EI, Exclude<R, Chat | Scope.Scope>>
  <A, EI, E, R>(
    decoder: Framing.Decoding<A, EI>,
    f: Each<A, E, R>
  ): Protocol<E | ChatError | EI, Exclude<R, Chat | Scope.Scope>>
} = (
  framing: Framing_,
  f: Each<any, unknown, unknown>
): Protocol<any, any> => internal.make(modeOf(framing, false), eachOf(f))

/**
 * {@link forEach} for hot paths: `f` runs once per read, with the array of frames (or machine messages) that
 * read completed, so per-element costs (an Effect, a clock reading) are paid once per read instead of once per
 * frame, and the answers to a pipelined batch can be pushed together. A read that completes nothing is not an
 * element: every array has at least one. As with {@link forEach}, `f` may be an effect that makes the function
 * once per connection: a hot path takes the `Chat` handle there, once.
 *
 * @throws {Terminator.InvalidTerminator} for `Terminator.length(0)`, which would emit empty frames forever.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat, Protocol, Terminator } from "effect-asynchat"
 *
 * // a line echo that answers each read's lines with one push
 * const EchoLines = Protocol.forEachBatch(Terminator.lf, (lines) =>
 *   Chat.push(...lines.flatMap((line) => [line.bytes, "\n"])))
 *
 * // the same, taking the connection's handle once
 * const EchoLinesFast = Protocol.forEachBatch(
 *   Terminator.lf,
 *   Effect.map(Chat.Chat, (chat) => (lines) => chat.push(...lines.flatMap((line) => [line.bytes, "\n"])))
 * )
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const forEachBatch: {
  <E, R>(
    terminator: Terminator.Terminator,
    f: Each<ReadonlyArray<Framing.Frame>, E, R>
  ): Protocol<E | ChatError, Exclude<R, Chat | Scope.Scope>>
  <S, A, EI, E, R>(
    machine: Framing.Machine<S, A, EI>,
    f: Each<ReadonlyArray<A>, E, R>
  ): Protocol<E | ChatError | EI, Exclude<R, Chat | Scope.Scope>>
  <A, EI, E, R>(
    decoder: Framing.Decoding<A, EI>,
    f: Each<ReadonlyArray<A>, E, R>
  ): Protocol<E | ChatError | EI, Exclude<R, Chat | Scope.Scope>>
} = (
  framing: Framing_,
  f: Each<ReadonlyArray<any>, unknown, unknown>
): Protocol<any, any> => internal.make(modeOf(framing, true), eachOf(f))

/**
 * A protocol whose handler receives its input as a Stream, for full control: read a greeting with
 * `Stream.runHead` then the rest, stop early with `Stream.runForEachWhile`, decode with `Stream.mapEffect`,
 * keep state for the connection in the handler's locals. The input fails with `ChatError` (a frame over
 * `maxFrameLength`, a timeout, a read error) or the machine's own error, and ends at the peer's end of input,
 * after a final unterminated frame if bytes were left over. It is handed out one element per pull, so it can be
 * read in several passes without losing what arrived together. The connection closes when the handler returns.
 *
 * @throws {Terminator.InvalidTerminator} for `Terminator.length(0)`, which would emit empty frames forever.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Chat, Protocol, Terminator } from "effect-asynchat"
 *
 * // a greeting line first, then every line back numbered, until "bye"
 * const Numbered = Protocol.make(Terminator.lf, (lines) =>
 *   Effect.gen(function*() {
 *     const hello = yield* Stream.runHead(lines)
 *     if (hello._tag === "None") return
 *     let n = 0
 *     yield* Stream.runForEachWhile(lines, (line) => {
 *       const text = new TextDecoder().decode(line.bytes)
 *       return text === "bye" ? Effect.succeed(false) : Effect.as(Chat.push(`${++n} ${text}\n`), true)
 *     })
 *   }))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make: {
  <E, R>(
    terminator: Terminator.Terminator,
    handler: (frames: Stream.Stream<Framing.Frame, ChatError>) => Effect.Effect<unknown, E, R>
  ): Protocol<E, Exclude<R, Chat | Scope.Scope>>
  <S, A, EI, E, R>(
    machine: Framing.Machine<S, A, EI>,
    handler: (messages: Stream.Stream<A, ChatError | EI>) => Effect.Effect<unknown, E, R>
  ): Protocol<E, Exclude<R, Chat | Scope.Scope>>
  <A, EI, E, R>(
    decoder: Framing.Decoding<A, EI>,
    handler: (messages: Stream.Stream<A, ChatError | EI>) => Effect.Effect<unknown, E, R>
  ): Protocol<E, Exclude<R, Chat | Scope.Scope>>
} = (
  framing: Framing_,
  handler: (input: Stream.Stream<any, any>) => Effect.Effect<unknown, unknown, unknown>
): Protocol<any, any> => internal.make(modeOf(framing, false), handler as internal.Handler<unknown, unknown>)

/**
 * A protocol whose handler is `f` of `self`'s: the same framing, and what runs on every connection wrapped.
 * With {@link forEach} and {@link forEachBatch} the handler is the whole loop, which fails as the input fails:
 * catching that failure here answers it before the connection closes (a frame too long, a bad request), and
 * `Effect.ensuring` runs a last step however the connection ends. `Chat` and `Scope` are provided to `f`'s
 * effect as to any handler.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat, Protocol, Terminator } from "effect-asynchat"
 *
 * const Upper = Protocol.forEach(Terminator.lf, (line) =>
 *   Chat.push(new TextDecoder().decode(line.bytes).toUpperCase(), "\n")).pipe(
 *     Protocol.mapHandler(Effect.catchReason("ChatError", "FrameTooLong", () => Chat.push("ERR line too long\n")))
 *   )
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const mapHandler: {
  <E, R, E2, R2>(
    f: (handler: Effect.Effect<unknown, E, R>) => Effect.Effect<unknown, E2, R2>
  ): (self: Protocol<E, R>) => Protocol<E2, Exclude<R2, Chat | Scope.Scope>>
  <E, R, E2, R2>(
    self: Protocol<E, R>,
    f: (handler: Effect.Effect<unknown, E, R>) => Effect.Effect<unknown, E2, R2>
  ): Protocol<E2, Exclude<R2, Chat | Scope.Scope>>
} = dual(2, <E, R, E2, R2>(
  self: Protocol<E, R>,
  f: (handler: Effect.Effect<unknown, E, R>) => Effect.Effect<unknown, E2, R2>
): Protocol<E2, Exclude<R2, Chat | Scope.Scope>> => {
  const { handler, mode } = internal.implOf(self)
  return internal.make(mode, (input) => f(handler(input) as Effect.Effect<unknown, E, R>)) as Protocol<
    E2,
    Exclude<R2, Chat | Scope.Scope>
  >
})

/**
 * Terminator framing as a Stream combinator: asynchat's `set_terminator` / `found_terminator`, typed, bounded
 * and fast.
 *
 * - {@link frames}: one terminator for every frame (lines, fixed-size records).
 * - {@link decode}: a pure state {@link Machine} picks the terminator for the next frame from the frames so
 *   far (HTTP headers, then a `Content-Length` body, then none). A switch applies to bytes already buffered.
 *   Or a {@link Decoder}, the fast form: one call per whole message over the buffered bytes (tokio's
 *   `Decoder`), for a protocol whose messages are many fields (RESP).
 *
 * Beyond asynchat, every frame is bounded by `maxFrameLength` (default {@link defaultMaxFrameLength}):
 * a longer frame fails the stream with `FramingError` / `FrameTooLong`, after buffering at most the limit plus
 * the delimiter's length, and the verdict does not depend on how the bytes were chunked. There is no
 * "discard to the next delimiter" mode: after an over-long frame the two sides no longer agree on where frames
 * are (with a count terminator they never can again), so the stream ends and the connection is closed; a text
 * protocol that wants to answer first (`-ERR line too long`) catches the error, answers, then closes.
 *
 * @since 0.1.0
 */
import { Cause, Effect, Pull, Schema, Stream } from "effect"
import type * as Arr from "effect/Array"
import { dual } from "effect/Function"
import * as Cutters from "./internal/cutters.ts"
import { reasonOf } from "./internal/failure.ts"
import type * as Framer from "./internal/framer.ts"
import * as Terminator from "./Terminator.ts"

/**
 * One cut of the input. `terminated` is true when the terminator ended it; false for bytes passed on under
 * `Terminator.none` and for the remainder left unterminated at end of input (asynchat hands those bytes to
 * `collect_incoming_data` and never calls `found_terminator`). `bytes` never includes the delimiter.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * const text = (frame: Framing.Frame) => new TextDecoder().decode(frame.bytes)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Frame {
  readonly bytes: Uint8Array
  readonly terminated: boolean
}

/**
 * The default bound on a frame's length, in bytes, not counting the delimiter: 64 KiB.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * Framing.defaultMaxFrameLength // 65536
 * ```
 *
 * @category constants
 * @since 0.1.0
 */
export const defaultMaxFrameLength = 64 * 1024

/**
 * Options shared by {@link frames} and {@link decode}.
 *
 * @example
 * ```ts
 * import type { Framing } from "effect-asynchat"
 *
 * const smtp: Framing.Options = { maxFrameLength: 512 }
 * const trusted: Framing.Options = { maxFrameLength: Number.POSITIVE_INFINITY } // explicitly unbounded
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /**
   * The longest frame accepted, in bytes, excluding the delimiter. A count terminator above it fails as soon
   * as it is chosen. Defaults to {@link defaultMaxFrameLength}; `Infinity` removes the bound.
   */
  readonly maxFrameLength?: number | undefined
}

/**
 * A frame exceeded its bound: `limit` is the bound in force (the connection's `maxFrameLength`, or the one a
 * machine's `maxFrameLength(state)` chose for that frame), `terminator` the frame's terminator as
 * `Terminator.format` renders it; the message says both.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * const error = new Framing.FrameTooLong({ limit: 1024, terminator: 'delimiter "\\r\\n"', message: "Frame too long" })
 * error.limit // 1024
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class FrameTooLong extends Schema.TaggedError<FrameTooLong>()("FrameTooLong", {
  limit: Schema.Int,
  terminator: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/**
 * Why framing failed. Catch it by tag, or one reason at a time with `Effect.catchReason`.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Framing, Terminator } from "effect-asynchat"
 *
 * const program = Stream.make(new TextEncoder().encode("a very long line\n")).pipe(
 *   Framing.frames(Terminator.lf, { maxFrameLength: 4 }),
 *   Stream.runCollect,
 *   Effect.catchReason("FramingError", "FrameTooLong", (reason) => Effect.succeed(`over ${reason.limit}`))
 * )
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class FramingError extends Schema.TaggedError<FramingError>()("FramingError", {
  reason: Schema.Union([FrameTooLong, Terminator.InvalidTerminator])
}) {
  override get message(): string {
    return this.reason.message
  }
}

/**
 * What a {@link Machine} does with a frame: go on in a new state, emitting messages, or fail.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * const step: Framing.Step<number, string, never> = Framing.next(1, "first message")
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Step<S, A, E> =
  | { readonly _tag: "Next"; readonly state: S; readonly messages: ReadonlyArray<A> }
  | { readonly _tag: "Pause"; readonly state: S; readonly messages: ReadonlyArray<A> }
  | { readonly _tag: "Fail"; readonly error: E }

/**
 * Go on in `state`, emitting `messages` downstream in order.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * Framing.next({ _tag: "Headers" }) // no message yet
 * Framing.next({ _tag: "Headers" }, "GET /") // one message
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const next = <S, A = never>(state: S, ...messages: ReadonlyArray<A>): Step<S, A, never> => ({
  _tag: "Next",
  state,
  messages
})

/**
 * Go on in `state`, emitting `messages`, and cut nothing more until the connection's handler has taken them:
 * the bytes after this frame wait uncut. For a message after which those bytes may not be what they seem: a
 * `STARTTLS` (the handler's `chat.startTls` discards them), an HTTP `Upgrade`. Messages cut before it in the
 * same read are handed out first. On a plain stream (`decode`) it is `next`: cutting goes on at once.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * type Command = { readonly _tag: "StartTls" } | { readonly _tag: "Line"; readonly text: string }
 * const step: Framing.Step<"tls", Command, never> = Framing.pause("tls", { _tag: "StartTls" })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const pause = <S, A = never>(state: S, ...messages: ReadonlyArray<A>): Step<S, A, never> => ({
  _tag: "Pause",
  state,
  messages
})

/**
 * Fail the stream with `error`; messages emitted before it are still delivered.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * class BadRequest { readonly _tag = "BadRequest" }
 * const step = Framing.fail(new BadRequest())
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const fail = <E>(error: E): Step<never, never, E> & Failed<E> => new Cutters.FailStep(error)

/**
 * What {@link fail} makes: a {@link Machine}'s failing step, and a {@link Decoder}'s failing answer.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * const failed: Framing.Failed<string> = Framing.fail("bad request")
 * failed.error // "bad request"
 * ```
 *
 * @category models
 * @since 0.2.0
 */
export interface Failed<E> {
  readonly _tag: "Fail"
  readonly error: E
}

/**
 * A pure state machine over frames: asynchat's `found_terminator` that calls `set_terminator`.
 *
 * - `terminator(state)` picks the terminator for the next frame; it is asked again after every frame and
 *   applies to bytes already buffered.
 * - `step(state, frame)` consumes one frame.
 * - `end(state)`, optional, runs at end of input after any unterminated remainder was stepped.
 *
 * A terminator constructor that throws `InvalidTerminator` inside `terminator` (say `Terminator.length(NaN)`
 * from a bad header) fails the stream with a typed `FramingError`; any other throw is a defect.
 *
 * @example
 * ```ts
 * import { Framing, Terminator } from "effect-asynchat"
 *
 * // "ECHO <n>\n" then n bytes, echoed back as one message
 * type State = { readonly _tag: "Command" } | { readonly _tag: "Body"; readonly length: number }
 * const Echo = Framing.machine<State, Uint8Array, string>({
 *   initial: { _tag: "Command" },
 *   terminator: (s) => s._tag === "Command" ? Terminator.lf : Terminator.length(s.length),
 *   step: (s, frame) => {
 *     if (s._tag === "Body") return Framing.next({ _tag: "Command" }, frame.bytes)
 *     const match = /^ECHO (\d+)$/.exec(new TextDecoder().decode(frame.bytes))
 *     return match ? Framing.next({ _tag: "Body", length: Number(match[1]) }) : Framing.fail("bad command")
 *   }
 * })
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Machine<S, A, E> {
  readonly initial: S
  readonly terminator: (state: S) => Terminator.Terminator
  /**
   * The longest frame in `state`, asked with each terminator: "command lines up to 2 KiB, values up to 1 MiB".
   * Where it is absent (or answers undefined), the connection's `maxFrameLength` bounds the frame.
   */
  readonly maxFrameLength?: ((state: S) => number | undefined) | undefined
  readonly step: (state: S, frame: Frame) => Step<S, A, E>
  readonly end?: ((state: S) => Step<S, A, E>) | undefined
}

/**
 * Where a {@link Decoder} reads: the bytes buffered, the message to decode starting at `offset`. The decoder
 * moves `offset` past the message it decodes, and leaves it where it was when it needs more bytes. `bytes` is
 * the connection's buffer, lent for the call: what a message keeps of it (a `subarray`) stays valid, but the
 * cursor itself is reused.
 *
 * @example
 * ```ts
 * import type { Framing } from "effect-asynchat"
 *
 * // a byte at the cursor, or -1 when there is none yet
 * const peek = (input: Framing.Cursor) => input.offset < input.bytes.length ? input.bytes[input.offset] : -1
 * ```
 *
 * @category models
 * @since 0.2.0
 */
export interface Cursor {
  readonly bytes: Uint8Array
  offset: number
}

/**
 * A {@link Decoder}'s answer when the bytes end before its message does: it is asked again, from the same
 * offset, once more bytes arrive. With the cursor moved forward, it says instead that the bytes it moved past
 * are no message and are consumed (blank lines, keep-alives): it is asked again at once, from there. Consumed
 * bytes are no part of a message, nor counted against `maxFrameLength`. Consume such bytes as soon as they are
 * seen: a run consumed only once it is complete counts against the limit, like a message, while it spans reads.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * const decode = (input: Framing.Cursor) => input.bytes.length - input.offset < 4 ? Framing.needMore : "four"
 * ```
 *
 * @category constants
 * @since 0.2.0
 */
export const needMore: unique symbol = Symbol.for("effect-asynchat/Framing/needMore")

/**
 * The type of {@link needMore}.
 *
 * @example
 * ```ts
 * import type { Framing } from "effect-asynchat"
 *
 * type Answer = string | Framing.NeedMore
 * ```
 *
 * @category models
 * @since 0.2.0
 */
export type NeedMore = typeof needMore

/**
 * A cursor decoder, in the spirit of tokio's `Decoder` and Netty's `ByteToMessageDecoder`: given the bytes
 * buffered, it decodes one whole message at the cursor (moving the cursor past it), says {@link needMore}, or
 * fails with {@link fail}. It is the fast form beside the terminator {@link Machine}: one call per message
 * instead of a step (a frame, a step object, a new state) per field, with the message's parts as views of the
 * input. A message that spans reads is presented again from its start, with more bytes after it. A decoder that
 * reads such a message in one go is plain; one whose messages may span many reads (many small fields: a RESP
 * request of thousands of arguments sent in small pieces) should remember how far it got, or it reads the first
 * bytes again on every read: that is the function form of {@link decoder}, one decoder per connection.
 *
 * Bounds: the bytes of one message, complete or not, are bounded by `maxFrameLength` (a longer one fails with
 * `FrameTooLong`, whatever the chunking), so a decoder that waits for a delimiter never buffers without bound.
 * A malformed message is bounded too: a failure found past the limit, where the limit's bytes alone leave the
 * decoder needing more, is `FrameTooLong`, as a read that ended at the limit would make it (the decoder is asked
 * again on those bytes, so its verdict on a message must depend on the message's bytes only).
 * `end`, optional, gets the bytes of a message left incomplete at the end of input; without it they are
 * dropped. Unlike a machine, a decoder cannot pause (STARTTLS): use a machine for a protocol that upgrades.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * // "<n>:" then n bytes: netstrings without the trailing comma
 * const Netstrings = Framing.decoder<Uint8Array, string>({
 *   decode: (input) => {
 *     const { bytes, offset } = input
 *     const colon = bytes.indexOf(0x3a, offset)
 *     if (colon < 0) return Framing.needMore
 *     const text = new TextDecoder().decode(bytes.subarray(offset, colon))
 *     if (!/^\d+$/.test(text)) return Framing.fail(`bad length ${text}`)
 *     const end = colon + 1 + Number(text)
 *     if (end > bytes.length) return Framing.needMore
 *     input.offset = end
 *     return bytes.subarray(colon + 1, end)
 *   }
 * })
 * ```
 *
 * @category models
 * @since 0.2.0
 */
export interface Decoder<A, E> {
  readonly decode: (input: Cursor) => A | NeedMore | Failed<E>
  readonly end?: ((rest: Uint8Array) => ReadonlyArray<A> | Failed<E>) | undefined
}

/**
 * What a decoder's consumers take: a {@link Decoder}, or a function that makes one for each connection (each
 * decoded stream), for a decoder that keeps state between calls.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * const Bytes: Framing.Decoding<Uint8Array, never> = Framing.decoder({
 *   decode: (input) => {
 *     const { bytes, offset } = input
 *     if (offset >= bytes.length) return Framing.needMore
 *     input.offset = bytes.length
 *     return bytes.subarray(offset)
 *   }
 * })
 * ```
 *
 * @category models
 * @since 0.2.0
 */
export type Decoding<A, E> = Decoder<A, E> | (() => Decoder<A, E>)

/**
 * Declares a {@link Decoder}; an identity that helps type inference. Given a function, it is called once per
 * connection (per decoded stream, and again after `discardBuffers`): the decoder it makes may keep state between
 * calls, its progress through a message that spans reads, so that each byte is read once. Such a decoder is told
 * of a message from its start again only when it returned it or failed: it should start afresh then.
 *
 * @example
 * ```ts
 * import { Framing } from "effect-asynchat"
 *
 * // fixed 4-byte records
 * const Records = Framing.decoder({
 *   decode: (input) => {
 *     if (input.bytes.length - input.offset < 4) return Framing.needMore
 *     input.offset += 4
 *     return input.bytes.subarray(input.offset - 4, input.offset)
 *   }
 * })
 *
 * // lines, each a message: one decoder per connection, which remembers how far it looked for the "\n"
 * const Lines = Framing.decoder(() => {
 *   let searched = 0 // bytes of the line in progress already searched
 *   return {
 *     decode: (input) => {
 *       const { bytes, offset } = input
 *       const lf = bytes.indexOf(0x0a, offset + searched)
 *       if (lf < 0) {
 *         searched = bytes.length - offset
 *         return Framing.needMore
 *       }
 *       searched = 0
 *       input.offset = lf + 1
 *       return bytes.subarray(offset, lf)
 *     }
 *   }
 * })
 * ```
 *
 * @category constructors
 * @since 0.2.0
 */
export const decoder: {
  <A, E = never>(make: () => Decoder<A, E>): () => Decoder<A, E>
  <A, E = never>(decoder: Decoder<A, E>): Decoder<A, E>
} = (decoder: Decoding<any, any>): any => decoder

/**
 * Declares a {@link Machine}; an identity that helps type inference.
 *
 * @example
 * ```ts
 * import { Framing, Terminator } from "effect-asynchat"
 *
 * // fixed 4-byte records, counted
 * const Records = Framing.machine({
 *   initial: 0,
 *   terminator: () => Terminator.length(4),
 *   step: (n: number, frame) => Framing.next(n + 1, { index: n, bytes: frame.bytes })
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const machine = <S, A, E = never>(machine: Machine<S, A, E>): Machine<S, A, E> => machine

/**
 * Cuts a byte stream into frames with one terminator for every frame.
 *
 * `Terminator.length(0)` is refused here (it would emit empty frames forever): the stream fails with
 * `InvalidTerminator`.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Framing, Terminator } from "effect-asynchat"
 *
 * const bytes = (s: string) => new TextEncoder().encode(s)
 * const lines = Stream.make(bytes("hel"), bytes("lo\nwor"), bytes("ld\n")).pipe(
 *   Framing.frames(Terminator.lf),
 *   Stream.map((frame) => new TextDecoder().decode(frame.bytes)),
 *   Stream.runCollect
 * )
 * // Effect.runPromise(lines) resolves to ["hello", "world"]
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const frames: {
  (
    terminator: Terminator.Terminator,
    options?: Options
  ): <E, R>(self: Stream.Stream<Uint8Array, E, R>) => Stream.Stream<Frame, E | FramingError, R>
  <E, R>(
    self: Stream.Stream<Uint8Array, E, R>,
    terminator: Terminator.Terminator,
    options?: Options
  ): Stream.Stream<Frame, E | FramingError, R>
} = dual(
  (args) => Stream.isStream(args[0]),
  <E, R>(
    self: Stream.Stream<Uint8Array, E, R>,
    terminator: Terminator.Terminator,
    options?: Options
  ): Stream.Stream<Frame, E | FramingError, R> => {
    if (terminator._tag === "Length" && terminator.length === 0) {
      return Stream.fail(
        new FramingError({
          reason: new Terminator.InvalidTerminator({
            message: "A static length(0) terminator would emit empty frames forever"
          })
        })
      )
    }
    const max = maxFrameLengthOf(options)
    return cut(self, (sink) => Cutters.fixed(terminator, max, sink as Cutters.Sink<Frame, never>))
  }
)

/**
 * Cuts a byte stream with a {@link Machine} (or decodes it with a {@link Decoder}) and emits its messages: the
 * dynamic form of {@link frames}. With a decoder, `maxFrameLength` bounds each message.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { Framing, Terminator } from "effect-asynchat"
 *
 * // "<n>:" then n bytes (a netstring without the trailing comma)
 * const Netstrings = Framing.machine<number | undefined, string, string>({
 *   initial: undefined,
 *   terminator: (n) => n === undefined ? Terminator.delimiter(":") : Terminator.length(n),
 *   step: (n, frame) => {
 *     const text = new TextDecoder().decode(frame.bytes)
 *     if (n !== undefined) return Framing.next(undefined, text)
 *     return /^\d+$/.test(text) ? Framing.next(Number(text)) : Framing.fail(`bad length ${text}`)
 *   }
 * })
 * const program = Stream.make(new TextEncoder().encode("5:hello3:abc")).pipe(
 *   Framing.decode(Netstrings),
 *   Stream.runCollect
 * )
 * // Effect.runPromise(program) resolves to ["hello", "abc"]
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const decode: {
  <S, A, E2>(
    machine: Machine<S, A, E2> | Decoding<A, E2>,
    options?: Options
  ): <E, R>(self: Stream.Stream<Uint8Array, E, R>) => Stream.Stream<A, E | E2 | FramingError, R>
  <E, R, S, A, E2>(
    self: Stream.Stream<Uint8Array, E, R>,
    machine: Machine<S, A, E2> | Decoding<A, E2>,
    options?: Options
  ): Stream.Stream<A, E | E2 | FramingError, R>
} = dual(
  (args) => Stream.isStream(args[0]),
  <E, R, S, A, E2>(
    self: Stream.Stream<Uint8Array, E, R>,
    framing: Machine<S, A, E2> | Decoding<A, E2>,
    options?: Options
  ): Stream.Stream<A, E | E2 | FramingError, R> => {
    const max = maxFrameLengthOf(options)
    return cut<E, R, A, E2>(
      self,
      (sink) => Cutters.isDecoder(framing) ? Cutters.decoder(framing, max, sink) : Cutters.machine(framing, max, sink)
    )
  }
)

/** Output frames after which `cut` stops at the next chunk boundary and hands the batch downstream. */
const BATCH_FRAMES = 1024

const maxFrameLengthOf = (options: Options | undefined): number => {
  const max = options?.maxFrameLength ?? defaultMaxFrameLength
  if (!(max === Number.POSITIVE_INFINITY || (Number.isSafeInteger(max) && max >= 0))) {
    throw new RangeError(`maxFrameLength must be a non-negative integer or Infinity, got ${String(max)}`)
  }
  return max
}

const toError = (failure: Framer.Failure): FramingError => new FramingError({ reason: reasonOf(failure) })

/**
 * Drives a cutter over a byte stream. Output produced before a failure is emitted first; the failure
 * follows on the next pull and ends the stream.
 */
const cut = <E, R, A, E2 = never>(
  self: Stream.Stream<Uint8Array, E, R>,
  make: (sink: Cutters.Sink<A, E2>) => Cutters.Cutter
): Stream.Stream<A, E | E2 | FramingError, R> =>
  Stream.transformPull(self, (upstream) =>
    Effect.sync(() => {
      const sink: Cutters.Sink<A, E2> = { out: [], error: undefined }
      const cutter = make(sink)
      let failure: E2 | FramingError | undefined = undefined
      let ended = false
      const settle = (result: Framer.Failure | undefined): boolean => {
        if (result !== undefined) failure = toError(result)
        else if (sink.error !== undefined) failure = sink.error
        else return true
        return false
      }
      // a machine's pause means nothing here: nobody acts between its messages and the bytes after them
      const record = (result: Framer.Failure | undefined): boolean => {
        let ok = settle(result)
        while (ok && cutter.framer.paused) ok = settle(cutter.framer.resume())
        return ok
      }
      record(cutter.start())
      const flush = (): Pull.Pull<Arr.NonEmptyReadonlyArray<A>, E | E2 | FramingError> => {
        if (sink.out.length === 0) return pull
        const batch = sink.out as unknown as Arr.NonEmptyReadonlyArray<A>
        sink.out = []
        return Effect.succeed(batch)
      }
      // Upstream chunks not cut yet. A batch of many chunks is cut a few at a time so that each output batch
      // stays small: frames held until a whole input batch is cut outlive the young generation, and copying
      // them into the old one costs more than the framing itself.
      let pending: Arr.NonEmptyReadonlyArray<Uint8Array> | undefined = undefined
      let next = 0
      const cutPending = (chunks: Arr.NonEmptyReadonlyArray<Uint8Array>) => {
        while (next < chunks.length) {
          if (!record(cutter.push(chunks[next++])) || sink.out.length >= BATCH_FRAMES) break
        }
        pending = next < chunks.length && failure === undefined ? chunks : undefined
        return flush()
      }
      const onChunks = (chunks: Arr.NonEmptyReadonlyArray<Uint8Array>) => {
        next = 0
        return cutPending(chunks)
      }
      const onDone = () => {
        ended = true
        record(cutter.end())
        return flush()
      }
      const pull: Pull.Pull<Arr.NonEmptyReadonlyArray<A>, E | E2 | FramingError> = Effect.suspend(() => {
        if (sink.out.length > 0) return flush()
        if (failure !== undefined) return Effect.fail(failure)
        if (pending !== undefined) return cutPending(pending)
        if (ended) return Cause.done()
        return Pull.matchEffect(upstream, { onSuccess: onChunks, onFailure: Effect.failCause, onDone })
      })
      return pull
    }))

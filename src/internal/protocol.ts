/**
 * What a `Protocol` is underneath: how a connection cuts its input (its mode) and the handler the connection
 * runs on that input. The public type shows neither; the connection runtime reads them with `implOf`.
 */
import { type Cause, Effect, Pull, Result, type Scope, type Stream } from "effect"
import { pipeArguments } from "effect/Pipeable"
import type { Chat } from "../Chat.ts"
import type * as Framing from "../Framing.ts"
import type { Protocol } from "../Protocol.ts"
import * as Terminator from "../Terminator.ts"
import * as Input from "./input.ts"

/** The key of a protocol's variance field, and of `Protocol.isProtocol`. */
export const TypeId = "~effect-asynchat/Protocol" as const

/**
 * How a protocol cuts its input: one terminator for every frame, a terminator the handler changes as frames
 * arrive (`AsyncChat.make`: frames are cut one at a time, so a change applies to the bytes right after the
 * frame), a `Framing.Machine`, or a `Framing.Decoder`. Batched, each element the connection hands out is the array of what one read
 * completed.
 */
export type Mode<EI> =
  | { readonly _tag: "Fixed"; readonly terminator: Terminator.Terminator; readonly batched?: boolean | undefined }
  | { readonly _tag: "Exact"; readonly terminator: Terminator.Terminator }
  | {
    readonly _tag: "Machine"
    readonly machine: Framing.Machine<any, any, EI>
    readonly batched?: boolean | undefined
  }
  | {
    readonly _tag: "Decoder"
    readonly decoder: Framing.Decoding<any, EI>
    readonly batched?: boolean | undefined
  }

/**
 * A connection's handler: it gets the connection's own input (a Stream over the connection's pull, whose
 * source `Input.sourceOf` finds), and runs with `Chat` and `Scope` provided.
 */
export type Handler<E, R> = (input: Stream.Stream<any, any>) => Effect.Effect<unknown, E, R | Chat | Scope.Scope>

/** A protocol as the connection runtime sees it. */
export interface Impl<E, R> {
  readonly mode: Mode<unknown>
  readonly handler: Handler<E, R>
}

const variance = { _E: (_: never) => _, _R: (_: never) => _ }

class ProtocolImpl<E, R> implements Impl<E, R> {
  readonly [TypeId] = variance
  readonly mode: Mode<unknown>
  readonly handler: Handler<E, R>
  constructor(mode: Mode<unknown>, handler: Handler<E, R>) {
    this.mode = mode
    this.handler = handler
  }
  pipe() {
    return pipeArguments(this, arguments)
  }
}

/** A protocol of `mode` and `handler`. */
export const make = <E, R>(mode: Mode<unknown>, handler: Handler<E, R>): Protocol<E, R> =>
  new ProtocolImpl(mode, handler) as unknown as Protocol<E, R>

/** The mode and handler of `protocol`. */
export const implOf = <E, R>(protocol: Protocol<E, R>): Impl<E, R> => protocol as unknown as Impl<E, R>

/** A fixed `length(0)` would cut empty frames forever without consuming a byte. */
export const refuseEndlessZero = (terminator: Terminator.Terminator): void => {
  if (terminator._tag === "Length" && terminator.length === 0) {
    throw new Terminator.InvalidTerminator({ message: "A fixed length(0) terminator would emit empty frames forever" })
  }
}

const notConnectionInput = Effect.die(
  new Error("A Protocol.forEach loop was handed a stream that is not a connection's input")
)

/**
 * Runs `f` for every element of a connection's input, in order, each once the effect of the one before is done;
 * it ends at the end of input and fails as the input fails, as `Stream.runForEach` would. It drives the
 * connection's pull directly, without the machinery `Stream.runForEach` builds around a stream (a scope, a
 * channel, and their frames on the handler's fiber): a read takes fewer steps, and an idle connection holds
 * about 0.7 KiB less. Its callers (`Protocol.forEach`, `forEachBatch`, `AsyncChat.make`) hide the input from
 * the user, so it is always the connection's own; anything else is a bug here, a defect rather than a silent
 * slow path.
 */
export const forEachOf = <A, E, X, E2, R2>(
  input: Stream.Stream<A, E>,
  f: (a: A) => Effect.Effect<X, E2, R2>
): Effect.Effect<void, E | E2, R2> => {
  const source = Input.sourceOf(input)
  if (source === undefined) return notConnectionInput
  // each pull runs `f` on the next element; `forever` without yields, as Stream.runForEach
  return Effect.catchCause(Effect.forever(source.each(f), { disableYield: true }), endOfInput)
}

/**
 * The end of input ends the loop; any other failure goes on, a defect that came with the end too (as
 * `Stream.runForEach` has it). A module function of one argument, which `catchCause` keeps as it is: no closure
 * per connection.
 */
const endOfInput = (cause: Cause.Cause<unknown>): Effect.Effect<void, never> => {
  const rest = Pull.filterDone(cause)
  return Result.isSuccess(rest) ? Effect.void : Effect.failCause(rest.failure as Cause.Cause<never>)
}

/**
 * A connection's input as a Stream, with the pull behind it kept on the side: `Protocol.runForEach` drives
 * that pull itself, without the machinery `Stream.runForEach` builds around it for every connection (a scope,
 * a channel, and their frames on the handler's fiber while it waits).
 */
import { Effect, type Pull, Stream } from "effect"
import type * as Arr from "effect/Array"

const pulls = new WeakMap<object, Pull.Pull<Arr.NonEmptyReadonlyArray<unknown>, unknown>>()

/** The stream of `pull`'s elements, whose pull `pullOf` finds. */
export const fromPull = <A, E>(pull: Pull.Pull<Arr.NonEmptyReadonlyArray<A>, E>): Stream.Stream<A, E> => {
  const stream = Stream.fromPull(Effect.succeed(pull))
  pulls.set(stream, pull)
  return stream as Stream.Stream<A, E>
}

/** The pull behind `stream` when `fromPull` made it, else undefined. */
export const pullOf = <A, E>(stream: Stream.Stream<A, E>): Pull.Pull<Arr.NonEmptyReadonlyArray<A>, E> | undefined =>
  pulls.get(stream) as Pull.Pull<Arr.NonEmptyReadonlyArray<A>, E> | undefined

/**
 * A connection's input as a Stream, with the pull behind it kept on the side: `Protocol.forEach` drives
 * that pull itself, without the machinery `Stream.runForEach` builds around it for every connection (a scope,
 * a channel, and their frames on the handler's fiber while it waits).
 */
import { Effect, type Pull, Stream } from "effect"

/** A pull that hands out one element at a time (what a connection's does), so a loop over it needs no inner one. */
export type One<A, E> = Pull.Pull<readonly [A], E>

const pulls = new WeakMap<object, One<unknown, unknown>>()

/** The stream of `pull`'s elements, whose pull `pullOf` finds. */
export const fromPull = <A, E>(pull: One<A, E>): Stream.Stream<A, E> => {
  const stream = Stream.fromPull(Effect.succeed(pull))
  pulls.set(stream, pull)
  return stream as Stream.Stream<A, E>
}

/** The pull behind `stream` when `fromPull` made it, else undefined. */
export const pullOf = <A, E>(stream: Stream.Stream<A, E>): One<A, E> | undefined =>
  pulls.get(stream) as One<A, E> | undefined

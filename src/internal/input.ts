/**
 * A connection's input as a Stream, with the source behind it kept on the side: `Protocol.forEach` drives
 * its pull itself, without the machinery `Stream.runForEach` builds around it for every connection (a scope,
 * a channel, and their frames on the handler's fiber while it waits).
 */
import { Effect, type Pull, Stream } from "effect"

/** A pull that hands out one element at a time (what a connection's does), so a loop over it needs no inner one. */
export type One<A, E> = Pull.Pull<readonly [A], E>

/**
 * What a connection's input stream is made from: its pull, and the loop that hands each element straight to a
 * function (`Protocol.forEach`), with no effect of its own per element.
 */
export interface Source<A, E> {
  readonly pull: One<A, E>
  /**
   * The pull made to run `f` on each element instead of handing it out: each pull is then `f` of the next
   * element. For the input's one reader, which takes it over for good.
   */
  each<X, E2, R>(f: (element: A) => Effect.Effect<X, E2, R>): Pull.Pull<X, E | E2, void, R>
}

const sources = new WeakMap<object, Source<unknown, unknown>>()

/** The stream of `source`'s elements, whose source `sourceOf` finds. */
export const fromSource = <A, E>(source: Source<A, E>): Stream.Stream<A, E> => {
  const stream = Stream.fromPull(Effect.succeed(source.pull))
  sources.set(stream, source as Source<unknown, unknown>)
  return stream as Stream.Stream<A, E>
}

/** The source behind `stream` when `fromSource` made it, else undefined. */
export const sourceOf = <A, E>(stream: Stream.Stream<A, E>): Source<A, E> | undefined =>
  sources.get(stream) as Source<A, E> | undefined

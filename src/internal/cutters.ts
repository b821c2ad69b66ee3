/**
 * The three ways to drive a `Framer`, shared by the `Framing` stream combinators and the connection runtime:
 * a fixed terminator, a pure `Framing.Machine`, and asynchat's imperative terminator (one frame per push).
 */
import type * as Framing from "../Framing.ts"
import * as Terminator from "../Terminator.ts"
import { type Failure, Frame, Framer } from "./framer.ts"

/** Where a cutter puts what it produces: frames or messages to hand downstream, or a machine's own error. */
export interface Sink<A, E> {
  out: Array<A>
  error: E | undefined
}

/** A framer with its feeding protocol. Failures of framing itself are returned; a machine's go to the sink. */
export interface Cutter {
  readonly framer: Framer
  /** Runs before any input: a count of 0 fires, a count over the limit fails, at once. */
  start(): Failure | undefined
  push(chunk: Uint8Array): Failure | undefined
  end(): Failure | undefined
}

const NO_BYTES = new Uint8Array(0)

// a class: a connection holds one, and an idle one should hold as little as it can
class FramerCutter implements Cutter {
  readonly framer: Framer
  constructor(framer: Framer) {
    this.framer = framer
  }
  start(): Failure | undefined {
    return this.framer.push(NO_BYTES)
  }
  push(chunk: Uint8Array): Failure | undefined {
    return this.framer.push(chunk)
  }
  end(): Failure | undefined {
    return this.framer.end()
  }
}

const cutterOf = (framer: Framer): Cutter => new FramerCutter(framer)

/** A frame sink that keeps cutting (`fixed`) or pauses after each frame (`exact`). */
const framesInto =
  (sink: Sink<Framing.Frame, never>, keepCutting: boolean) => (bytes: Uint8Array, terminated: boolean) => {
    sink.out.push(new Frame(bytes, terminated))
    return keepCutting
  }

/** Every frame cut with one terminator, as many per push as the chunk holds; a chunk of many comes as one array. */
export const fixed = (
  terminator: Terminator.Terminator,
  maxFrameLength: number,
  sink: Sink<Framing.Frame, never>
): Cutter =>
  cutterOf(
    new Framer(terminator, maxFrameLength, framesInto(sink, true), (frames) => {
      // Linear either way: a whole-array copy when `frames` is the larger part, else push it element by element.
      const out = sink.out
      if (out.length === 0) sink.out = frames
      else if (frames.length > out.length) sink.out = out.concat(frames)
      else for (let i = 0; i < frames.length; i++) out.push(frames[i])
    })
  )

/**
 * asynchat's imperative form: one frame per push, so that a terminator set while that frame is handled applies
 * to the bytes after it. The bytes left over are kept in `framer.rest` for the next push.
 */
export const exact = (
  terminator: Terminator.Terminator,
  maxFrameLength: number,
  sink: Sink<Framing.Frame, never>
): Cutter => cutterOf(new Framer(terminator, maxFrameLength, framesInto(sink, false)))

/** A pure state machine: it picks the terminator after every frame and emits its messages to the sink. */
export const machine = <S, A, E>(
  machine: Framing.Machine<S, A, E>,
  maxFrameLength: number,
  sink: Sink<A, E>
): Cutter => {
  let state = machine.initial
  const apply = (step: Framing.Step<S, A, E>): boolean => {
    if (step._tag === "Fail") {
      sink.error = step.error
      return false
    }
    state = step.state
    for (let i = 0; i < step.messages.length; i++) sink.out.push(step.messages[i])
    return true
  }
  // after a pause the framer keeps what follows uncut: `onFrame` says stop, with no failure
  const onFrame = (bytes: Uint8Array, terminated: boolean): boolean => {
    const step = machine.step(state, new Frame(bytes, terminated))
    return apply(step) && choose() && step._tag !== "Pause"
  }
  const bound = machine.maxFrameLength
  const choose = (): boolean => {
    try {
      framer.terminator = machine.terminator(state)
      if (bound !== undefined) framer.maxFrameLength = bound(state) ?? maxFrameLength
      return true
    } catch (error) {
      if (!(error instanceof Terminator.InvalidTerminator)) throw error
      framer.failure = { _tag: "InvalidTerminator", message: error.message }
      return false
    }
  }
  const framer = new Framer(
    Terminator.none,
    maxFrameLength,
    onFrame
  )
  const ending = machine.end
  return {
    framer,
    start: () => (choose() ? framer.push(NO_BYTES) : framer.failure),
    push: (chunk) => framer.push(chunk),
    end: () => {
      const failure = framer.end()
      if (failure === undefined && sink.error === undefined && ending !== undefined) apply(ending(state))
      return failure
    }
  }
}

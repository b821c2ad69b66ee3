/**
 * The ways to cut a connection's input, shared by the `Framing` stream combinators and the connection runtime:
 * a `Framer` driven by a fixed terminator, by a pure `Framing.Machine` or by asynchat's imperative terminator
 * (one frame per push), and a `Framing.Decoder` over a buffer of its own.
 */
import { Buffer } from "node:buffer"
import type * as Framing from "../Framing.ts"
import * as Terminator from "../Terminator.ts"
import { asBuffer, byteCount, type Failure, Frame, Framer, type Receiver, tooLong } from "./framer.ts"

/** Where a cutter puts what it produces: frames or messages to hand downstream, or a machine's own error. */
export interface Sink<A, E> {
  out: Array<A>
  error: E | undefined
}

/** What the connection sees of a cutter's buffer: a `Framer`, or a decoder's. */
export interface Cutting {
  /** The terminator for the next frame (a decoder has none: `none`, and setting it does nothing). */
  terminator: Terminator.Terminator
  /** True while paused after a frame: input waits uncut until `resume`. */
  readonly paused: boolean
  resume(): Failure | undefined
  /** Drops the bytes of the frame in progress and of the input not cut yet. */
  discard(): void
  /** Bytes of the frame (or message) in progress. */
  readonly buffered: number
  /** Bytes waiting uncut while paused. */
  readonly pendingBytes: number
  /** Frames (or messages) cut so far. */
  readonly completed: number
}

/** A framer with its feeding protocol. Failures of framing itself are returned; a machine's go to the sink. */
export interface Cutter {
  readonly framer: Cutting
  /** Runs before any input: a count of 0 fires, a count over the limit fails, at once. */
  start(): Failure | undefined
  push(chunk: Uint8Array): Failure | undefined
  end(): Failure | undefined
}

const NO_BYTES = new Uint8Array(0)

/**
 * What `Framing.fail` makes. A class, so that a decoder's failure is told from its messages by `instanceof`,
 * whatever they look like.
 */
export class FailStep<E> implements Framing.Failed<E> {
  readonly _tag = "Fail"
  readonly error: E
  constructor(error: E) {
    this.error = error
  }
}

const isFailed = <E>(u: unknown): u is Framing.Failed<E> => u instanceof FailStep

/** True for a `Framing.Decoder` (or a function making one), false for a `Framing.Machine`. */
export const isDecoder = (
  framing: Framing.Machine<any, any, any> | Framing.Decoding<any, any>
): framing is Framing.Decoding<any, any> => typeof framing === "function" || "decode" in framing

// The cutters are classes, each the receiver of its framer's frames (its methods, not closures): a connection
// holds one, and an idle one should hold as little as it can.

/** asynchat's imperative form: one frame per push, each into the sink (see `exact`). */
class ExactCutter implements Cutter, Receiver {
  readonly framer: Framer
  protected readonly sink: Sink<Framing.Frame, never>
  constructor(terminator: Terminator.Terminator, maxFrameLength: number, sink: Sink<Framing.Frame, never>) {
    this.sink = sink
    this.framer = new Framer(terminator, maxFrameLength, this)
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
  /** Pauses after each frame. */
  onFrame(bytes: Uint8Array, terminated: boolean): boolean {
    this.sink.out.push(new Frame(bytes, terminated))
    return false
  }
}

/** Every frame cut with one terminator, into the sink (see `fixed`). */
class FixedCutter extends ExactCutter {
  /** Keeps cutting. */
  override onFrame(bytes: Uint8Array, terminated: boolean): boolean {
    this.sink.out.push(new Frame(bytes, terminated))
    return true
  }
  onFrames(frames: Array<Framing.Frame>): void {
    // Linear either way: a whole-array copy when `frames` is the larger part, else push it element by element.
    const sink = this.sink
    const out = sink.out
    if (out.length === 0) sink.out = frames
    else if (frames.length > out.length) sink.out = out.concat(frames)
    else for (let i = 0; i < frames.length; i++) out.push(frames[i])
  }
}

/** Every frame cut with one terminator, as many per push as the chunk holds; a chunk of many comes as one array. */
export const fixed = (
  terminator: Terminator.Terminator,
  maxFrameLength: number,
  sink: Sink<Framing.Frame, never>
): Cutter => new FixedCutter(terminator, maxFrameLength, sink)

/**
 * asynchat's imperative form: one frame per push, so that a terminator set while that frame is handled applies
 * to the bytes after it. The bytes left over are kept in `framer.rest` for the next push.
 */
export const exact = (
  terminator: Terminator.Terminator,
  maxFrameLength: number,
  sink: Sink<Framing.Frame, never>
): Cutter => new ExactCutter(terminator, maxFrameLength, sink)

/** A pure state machine: it picks the terminator after every frame and emits its messages to the sink. */
class MachineCutter<S, A, E> implements Cutter, Receiver {
  readonly framer: Framer
  private state: S
  private readonly machine: Framing.Machine<S, A, E>
  /** The limit of a frame the machine does not bound itself. */
  private readonly maxFrameLength: number
  private readonly sink: Sink<A, E>

  constructor(machine: Framing.Machine<S, A, E>, maxFrameLength: number, sink: Sink<A, E>) {
    this.machine = machine
    this.maxFrameLength = maxFrameLength
    this.sink = sink
    this.state = machine.initial
    this.framer = new Framer(Terminator.none, maxFrameLength, this)
  }

  start(): Failure | undefined {
    return this.choose() ? this.framer.push(NO_BYTES) : this.framer.failure
  }

  push(chunk: Uint8Array): Failure | undefined {
    return this.framer.push(chunk)
  }

  end(): Failure | undefined {
    const failure = this.framer.end()
    const ending = this.machine.end
    if (failure === undefined && this.sink.error === undefined && ending !== undefined) this.apply(ending(this.state))
    return failure
  }

  // after a pause the framer keeps what follows uncut: `onFrame` says stop, with no failure
  onFrame(bytes: Uint8Array, terminated: boolean): boolean {
    const step = this.machine.step(this.state, new Frame(bytes, terminated))
    return this.apply(step) && this.choose() && step._tag !== "Pause"
  }

  private apply(step: Framing.Step<S, A, E>): boolean {
    if (step._tag === "Fail") {
      this.sink.error = step.error
      return false
    }
    this.state = step.state
    const out = this.sink.out
    for (let i = 0; i < step.messages.length; i++) out.push(step.messages[i])
    return true
  }

  private choose(): boolean {
    const framer = this.framer
    try {
      framer.terminator = this.machine.terminator(this.state)
      const bound = this.machine.maxFrameLength
      if (bound !== undefined) framer.maxFrameLength = bound(this.state) ?? this.maxFrameLength
      return true
    } catch (error) {
      if (!(error instanceof Terminator.InvalidTerminator)) throw error
      framer.failure = { _tag: "InvalidTerminator", message: error.message }
      return false
    }
  }
}

/** A pure state machine: it picks the terminator after every frame and emits its messages to the sink. */
export const machine = <S, A, E>(
  machine: Framing.Machine<S, A, E>,
  maxFrameLength: number,
  sink: Sink<A, E>
): Cutter => new MachineCutter(machine, maxFrameLength, sink)

const EMPTY = Buffer.alloc(0)
/** The marker `Framing.needMore` is (a registered symbol: the same in every copy of the package). */
const NEED_MORE: Framing.NeedMore = Symbol.for("effect-asynchat/Framing/needMore") as Framing.NeedMore

/**
 * A `Framing.Decoder` over the input: each push is decoded where it lies when nothing is buffered (its messages
 * are views of the chunk), else appended to the bytes of the message in progress and decoded there. What is
 * left of a message is kept in a buffer of its own; a buffer whose bytes messages hold views of is never written
 * again. The message in progress is bounded by `maxLength` (a message longer fails, complete or not, and so does
 * one the decoder fails on past the limit when it needs more than the limit's bytes), so nothing here grows past
 * the limit and one read.
 */
class DecoderCutter<A, E> implements Cutter, Cutting {
  readonly framer: Cutting = this
  completed = 0
  private acc: Buffer = EMPTY
  private accLen = 0
  /** Why the last push failed, when a bound ended it (the decoder's own failures go to the sink). */
  private failure: Failure | undefined = undefined
  private readonly cursor: { bytes: Uint8Array; offset: number } = { bytes: EMPTY, offset: 0 }
  private readonly decoding: Framing.Decoding<A, E>
  /** This connection's decoder: made by the function form, which may keep state between calls. */
  private decoder: Framing.Decoder<A, E>
  private readonly maxLength: number
  private readonly sink: Sink<A, E>

  constructor(decoding: Framing.Decoding<A, E>, maxLength: number, sink: Sink<A, E>) {
    this.decoding = decoding
    this.decoder = typeof decoding === "function" ? decoding() : decoding
    this.maxLength = maxLength
    this.sink = sink
  }

  get terminator(): Terminator.Terminator {
    return Terminator.none
  }

  set terminator(_: Terminator.Terminator) {}

  get paused(): boolean {
    return false
  }

  resume(): Failure | undefined {
    return undefined
  }

  get buffered(): number {
    return this.accLen
  }

  get pendingBytes(): number {
    return 0
  }

  discard(): void {
    this.acc = EMPTY
    this.accLen = 0
    // a decoder that keeps state knew of the bytes discarded: the next message is a fresh decoder's
    if (typeof this.decoding === "function") this.decoder = this.decoding()
  }

  start(): Failure | undefined {
    return undefined
  }

  push(chunk: Uint8Array): Failure | undefined {
    if (chunk.length === 0) return undefined
    if (this.accLen === 0) {
      const buf = asBuffer(chunk)
      const at = this.decodeAll(buf)
      if (at < 0) return this.failure
      // the rest of the chunk starts the next message: copied, so that the chunk is not kept for it
      if (at < buf.length) this.keep(buf, at, buf.length)
      return undefined
    }
    this.append(chunk)
    const acc = this.accLen === this.acc.length ? this.acc : this.acc.subarray(0, this.accLen)
    const at = this.decodeAll(acc)
    if (at < 0) return this.failure
    if (at === 0) return undefined
    // messages hold views of `acc`: what is left moves to a buffer of its own
    const accLen = this.accLen
    this.acc = EMPTY
    this.accLen = 0
    if (at < accLen) this.keep(acc, at, accLen)
    return undefined
  }

  end(): Failure | undefined {
    const rest = this.accLen
    if (rest === 0) return undefined
    const bytes = this.acc.subarray(0, rest)
    this.acc = EMPTY
    this.accLen = 0
    const ending = this.decoder.end
    if (ending === undefined) return undefined
    const result = ending(bytes)
    if (isFailed(result)) this.sink.error = result.error
    else for (let i = 0; i < result.length; i++) this.sink.out.push(result[i])
    return undefined
  }

  /**
   * Decodes the messages of `bytes` into the sink: where the first incomplete one starts, or -1 on a failure
   * (the decoder's goes to the sink, a bound's to `failure`).
   */
  private decodeAll(bytes: Uint8Array): number {
    const cursor = this.cursor
    const decode = this.decoder.decode
    const max = this.maxLength
    const out = this.sink.out
    const len = bytes.length
    cursor.bytes = bytes
    cursor.offset = 0
    let at = 0
    while (at < len) {
      const result = decode(cursor)
      if (result === NEED_MORE) {
        // what the cursor moved past is consumed, no message: the decoder goes on from there (Netty's loop)
        const next = cursor.offset
        if (!(next >= at && next <= len)) throw new Error(decoderMoved("said needMore", at, next, len))
        if (next === at) break
        at = next
        continue
      }
      if (result instanceof FailStep) {
        // Found past the bound, the failure would depend on the chunking: a read ending at the bound leaves the
        // decoder needing more, and the message too long. Asked again on the bound's bytes alone, it says which.
        if (len - at > max && this.needsMoreWithin(bytes, at, at + max)) {
          return this.tooLong(`a message of at least ${byteCount(max + 1)}`)
        }
        this.sink.error = result.error
        return -1
      }
      const next = cursor.offset
      if (!(next > at && next <= len)) throw new Error(decoderMoved("returned a message", at, next, len))
      if (next - at > max) return this.tooLong(`a message of ${byteCount(next - at)}`)
      out.push(result as A)
      this.completed++
      at = next
    }
    cursor.bytes = EMPTY
    // an incomplete message already this long is longer than the limit
    if (len - at >= max) return this.tooLong(`a message of at least ${byteCount(len - at + 1)}`)
    return at
  }

  /** True when the decoder needs more than `bytes[at, end)` for the message at `at`. */
  private needsMoreWithin(bytes: Uint8Array, at: number, end: number): boolean {
    const cursor = this.cursor
    const decode = this.decoder.decode
    cursor.bytes = bytes.subarray(0, end)
    cursor.offset = at
    const needsMore = decode(cursor) === NEED_MORE
    cursor.bytes = EMPTY
    return needsMore
  }

  private tooLong(what: string): number {
    this.failure = tooLong(this.maxLength, what, undefined)
    return -1
  }

  /** Keeps `src[from, to)` as the start of the message in progress, in a buffer of its own. */
  private keep(src: Uint8Array, from: number, to: number): void {
    const n = to - from
    this.acc = Buffer.allocUnsafe(Math.max(n * 2, 64))
    this.acc.set(src.subarray(from, to), 0)
    this.accLen = n
  }

  /** Appends `chunk` to the message in progress, growing the buffer by doubling. */
  private append(chunk: Uint8Array): void {
    const needed = this.accLen + chunk.length
    if (needed > this.acc.length) {
      const next = Buffer.allocUnsafe(Math.max(needed, this.acc.length * 2))
      next.set(this.acc.subarray(0, this.accLen), 0)
      this.acc = next
    }
    this.acc.set(chunk, this.accLen)
    this.accLen = needed
  }
}

const decoderMoved = (what: string, from: number, to: number, length: number): string =>
  `A Framing.Decoder ${what} but moved the cursor from ${from} to ${to} (of ${length} bytes): ` +
  "it may move forward, past a message it returns, and no further than the bytes it was given"

/** A `Framing.Decoder` (one per connection when given as a function), its message in progress bounded by `maxLength`. */
export const decoder = <A, E>(decoding: Framing.Decoding<A, E>, maxLength: number, sink: Sink<A, E>): Cutter =>
  new DecoderCutter(decoding, maxLength, sink)

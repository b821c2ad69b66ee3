/**
 * A connection's input as its handler pulls it: the reads the inbox hands over, cut into frames (or a machine's
 * messages) by the protocol's cutter, handed out one at a time or, for a batch protocol, a read's worth at once.
 *
 * A read is cut in the step that hands it over (`onRead`, which the inbox calls in the transport's callback
 * when the handler is waiting), so a request costs no turn of its own. Before the handler waits for more
 * input, what it queued in answer goes out (`flush`): the natural end of a batch.
 */
import { Cause, Effect } from "effect"
import * as ChatError from "../ChatError.ts"
import * as Terminator from "../Terminator.ts"
import type { Counters } from "./counters.ts"
import * as Cutters from "./cutters.ts"
import { reasonOf } from "./failure.ts"
import type { Failure } from "./framer.ts"
import type { Inbox, Reader } from "./inbox.ts"
import type * as Input from "./input.ts"
import type { Mode } from "./protocol.ts"

/** One frame, message or batch at a time (see `ready`): what `Protocol.forEach` drives. */
export type Next = Input.One<unknown, unknown>

/**
 * Where the input is: reading; ended by the peer or drained by a graceful shutdown (what is cut is handed out,
 * then the end); failed, or a machine's defect (after what was cut before it). Small integers: a server holds
 * one per connection.
 */
const Phase = { Reading: 0, Ended: 1, Drained: 2, Failed: 3, Defect: 4 } as const
type Phase = typeof Phase[keyof typeof Phase]

/** What the pull needs of its connection. */
export interface Owner {
  readonly inbox: Pick<Inbox, "next" | "frameInProgress" | "wake">
  readonly counters: Pick<Counters, "read" | "frames">
  /** Writes what the handler queued, before it waits for more input: what to wait for, if the output is full. */
  flush(): Effect.Effect<void, ChatError.ChatError> | undefined
  holdOutput(): void
  releaseOutput(): void
}

/** No frames ready: shared, never written (`ready` is only ever replaced). */
const NONE: ReadonlyArray<never> = []

const fromFailure = (failure: Failure): ChatError.ChatError => new ChatError.ChatError({ reason: reasonOf(failure) })

/**
 * Whether `mode`'s cutter does nothing before its first bytes, so that it may be made when they come: a terminator
 * that is no count (a count over the limit fails at once), or a decoder. A machine chooses its first terminator at
 * once, which may fail.
 */
const startsEmpty = (mode: Mode<unknown>): boolean =>
  mode._tag === "Decoder" || (mode._tag !== "Machine" && mode.terminator._tag !== "Length")

export class InputPull implements Reader, Input.Source<unknown, unknown>, Cutters.Sink<unknown, unknown> {
  private readonly owner: Owner
  // The pull is its cutter's sink: everything the cutter produces during one read goes to `out`, handed downstream
  // as one batch. Before the cutter is made (nothing can be pushed), the shared empty array.
  out: Array<unknown> = NONE as unknown as Array<unknown>
  error: unknown = undefined
  /**
   * Made at the first read when it starts empty (`startsEmpty`): a connection that has read nothing yet holds no
   * framer.
   */
  private cutter: Cutters.Cutter | undefined = undefined
  private readonly mode: Mode<unknown>
  private readonly maxFrameLength: number
  private readonly batched: boolean
  private phase: Phase = Phase.Reading
  /** The failure (Failed), or what a machine threw (Defect): a machine that throws is a bug. */
  private failure: unknown = undefined
  // Frames are handed out one per pull, not in batches: a consumer that stops early (`Stream.runHead`,
  // `Stream.take`) leaves the rest here for its next read instead of dropping them with the batch.
  private ready: ReadonlyArray<unknown> = NONE
  private readyAt = 0
  private completedAtWait = 0
  /** Set by `each`: what each element is handed to, its effect what a pull then is. */
  private consumer: ((element: unknown) => Effect.Effect<unknown, unknown, unknown>) | undefined = undefined
  readonly pull: Next = Effect.suspend(() => this.step())

  constructor(owner: Owner, mode: Mode<unknown>, maxFrameLength: number) {
    this.owner = owner
    this.mode = mode
    this.maxFrameLength = maxFrameLength
    this.batched = mode._tag !== "Exact" && mode.batched === true
    if (startsEmpty(mode)) return
    this.makeCutter()
    // A machine whose first terminator is invalid (or throws) fails the first pull, after what it emitted: the
    // connection opens, and its handler sees why it closes.
    this.attempt(startOf)
  }

  /** The cutter of the mode, into this pull. */
  private makeCutter(): Cutters.Cutter {
    const mode = this.mode
    const max = this.maxFrameLength
    this.out = []
    return this.cutter = mode._tag === "Machine"
      ? Cutters.machine(mode.machine, max, this)
      : mode._tag === "Decoder"
      ? Cutters.decoder(mode.decoder, max, this)
      : mode._tag === "Exact"
      ? Cutters.exact(mode.terminator, max, this as Cutters.Sink<any, never>)
      : Cutters.fixed(mode.terminator, max, this as Cutters.Sink<any, never>)
  }

  /** What the inbox resumes the handler with: the reads (undefined: the end of input) cut into frames. */
  onRead(chunks: ReadonlyArray<Uint8Array> | undefined): Next {
    if (chunks === undefined) {
      if (this.phase === Phase.Reading) this.phase = Phase.Ended
      // no cutter yet: no bytes either, nothing to end
      if (this.cutter !== undefined && !this.cutter.framer.paused) this.attempt(endOf)
      return this.handOut()
    }
    if (this.cutter === undefined) this.makeCutter()
    let size = 0
    for (let i = 0; i < chunks.length; i++) {
      if (this.phase >= Phase.Failed) break
      const chunk = chunks[i]
      size += chunk.length
      this.attempt(pushOf, chunk)
    }
    this.owner.counters.read(size)
    return this.handOut()
  }

  each<X, E2, R>(f: (element: unknown) => Effect.Effect<X, E2, R>): Effect.Effect<X, unknown, R> {
    this.consumer = f
    return this.pull as Effect.Effect<any, unknown, R>
  }

  holdOutput(): void {
    this.owner.holdOutput()
  }

  releaseOutput(): void {
    this.owner.releaseOutput()
  }

  /** A graceful shutdown: the input ends once the frames already cut are handed out (a partial frame is not one). */
  drain(): void {
    if (this.phase !== Phase.Reading) return
    this.phase = Phase.Drained
    // a handler waiting for input gets its end now: `step` says so, as nothing complete is left
    this.owner.inbox.wake(this.pull)
  }

  /** asynchat's `discard_buffers`, input side: the bytes of the frame in progress. */
  discard(): void {
    this.cutter?.framer.discard()
  }

  /**
   * An upgrade's discard: the input not handed out yet (frames cut and not taken, the bytes not cut), which came
   * before the handshake; true when there was some. The terminator, or a machine's state, stays as it is.
   */
  discardUnread(): boolean {
    const framer = this.cutter?.framer
    if (framer === undefined) return this.readyAt < this.ready.length
    const dropped = this.readyAt < this.ready.length || this.out.length > 0 || framer.buffered > 0 ||
      framer.pendingBytes > 0
    this.ready = NONE
    this.readyAt = 0
    this.out = []
    framer.discard()
    return dropped
  }

  get terminator(): Terminator.Terminator {
    const mode = this.mode
    return this.cutter !== undefined ? this.cutter.framer.terminator : mode._tag === "Decoder" ||
        mode._tag === "Machine"
      ? Terminator.none
      : mode.terminator
  }

  set terminator(terminator: Terminator.Terminator) {
    ;(this.cutter ?? this.makeCutter()).framer.terminator = terminator
  }

  private step(): Next {
    if (this.readyAt < this.ready.length || this.out.length > 0) return this.handOut()
    const phase = this.phase
    if (phase === Phase.Failed) return Effect.fail(this.failure)
    if (phase === Phase.Defect) return Effect.die(this.failure)
    // no cutter: nothing was read yet, no frame is in progress
    const framer = this.cutter?.framer
    if (framer !== undefined && framer.paused) {
      // asynchat's one frame at a time: the input after the last frame is cut now, with the terminator now set
      this.attempt(resumeOf)
      if (this.phase === Phase.Ended && !framer.paused) this.attempt(endOf)
      return this.handOut()
    }
    if (phase !== Phase.Reading) return Cause.done()
    // every frame of the last read is consumed: what the handler queued goes out now, before we wait
    const flushed = this.owner.flush()
    // the frame timeout watches the partial frame left now (a discarded one is none), from the read that began it
    const inbox = this.owner.inbox
    if (framer === undefined) inbox.frameInProgress(false, false)
    else {
      inbox.frameInProgress(framer.buffered > 0, framer.completed !== this.completedAtWait)
      this.completedAtWait = framer.completed
    }
    // after a wait for room, a step again: a graceful shutdown that came meanwhile (drain) ends the input then
    return flushed === undefined ? inbox.next as Next : Effect.andThen(flushed, this.pull)
  }

  /** What was cut, handed out: one frame (or a read's batch); the next read when nothing is ready. */
  private handOut(): Next {
    if (this.batched) {
      if (this.out.length === 0) return this.pull
      const batch = this.out
      this.out = []
      this.owner.counters.frames(batch.length)
      return this.consumer === undefined ? Effect.succeed([batch]) : this.consumer(batch) as Next
    }
    if (this.readyAt === this.ready.length) {
      if (this.out.length === 0) return this.pull
      this.ready = this.out
      this.readyAt = 0
      this.out = []
      this.owner.counters.frames(this.ready.length)
    }
    const element = this.ready[this.readyAt++]
    return this.consumer === undefined ? Effect.succeed([element]) : this.consumer(element) as Next
  }

  /** Runs one of the cutter's steps, recording a failure, a machine's error, or what it threw. */
  private attempt(run: (cutter: Cutters.Cutter, chunk: Uint8Array) => Failure | undefined, chunk?: Uint8Array): void {
    if (this.phase >= Phase.Failed) return
    try {
      const failure = run(this.cutter!, chunk!)
      if (failure !== undefined) this.fail(fromFailure(failure))
      else if (this.error !== undefined) this.fail(this.error)
    } catch (thrown) {
      this.phase = Phase.Defect
      this.failure = thrown
    }
  }

  private fail(error: unknown): void {
    this.phase = Phase.Failed
    this.failure = error
  }
}

// The cutter's steps, as module functions: `attempt` takes one without a closure per read.
const startOf = (cutter: Cutters.Cutter) => cutter.start()
const pushOf = (cutter: Cutters.Cutter, chunk: Uint8Array) => cutter.push(chunk)
const endOf = (cutter: Cutters.Cutter) => cutter.end()
const resumeOf = (cutter: Cutters.Cutter) => cutter.framer.resume()

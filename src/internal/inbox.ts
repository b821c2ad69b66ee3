/**
 * A connection's input as its consumer sees it: the reads a transport delivers, handed over when the consumer
 * asks, with idle and frame timeouts that cost nothing per read.
 *
 * A read that arrives while the consumer waits goes straight to it, in the transport's own callback, already
 * made into what the consumer wants of it (`reader.onRead`: the connection cuts it into frames there). One that
 * arrives while the consumer is busy is held, and the transport paused until the consumer asks again: at most
 * one read ahead, so a handler that falls behind stops the peer through the transport's own backpressure.
 *
 * `Effect.timeoutOrElse` around every read would cost a forked race and a timer each time (more than the rest
 * of a request). Instead a watchdog (shared by a server's connections) looks at the inbox when its next
 * deadline comes: the idle deadline (`idle` after the last bytes arrived) or the frame deadline (`frame` after
 * the current frame's first bytes). When a deadline passed while the consumer waits, that wait fails with the
 * timeout's error; a frame deadline missed while the consumer was busy fails its next wait, a turn later. A
 * consumer that catches the error and waits again gets a fresh period.
 */
import { Effect, type Scheduler } from "effect"
import type * as ChatError from "../ChatError.ts"
import type { Input, Transport } from "./transport.ts"
import type { Watchdog, Watched } from "./watchdog.ts"

type Resume = (effect: Effect.Effect<unknown, unknown>) => void

/** The consumer of the reads. */
export interface Reader {
  /** What the consumer makes of the reads handed to it (undefined: the end of input): the effect it resumes with. */
  onRead(chunks: ReadonlyArray<Uint8Array> | undefined): Effect.Effect<unknown, unknown>
  /**
   * Around a read handed over in the transport's callback, in which the consumer runs at once: what it writes
   * meanwhile is written when it is done, rather than on a turn of its own.
   */
  holdOutput(): void
  releaseOutput(): void
}

/** What an inbox needs of its connection. */
export interface Owner {
  /** Paused while the consumer is busy with a read and another is held. */
  readonly transport: Pick<Transport, "pause" | "resume">
  readonly reader: Reader
}

/**
 * Where the consumer and the transport are: before the first wait (the transport paused, nothing held); the
 * consumer busy with what it was handed, the transport flowing; the consumer waiting for a read; the consumer
 * busy and a read held, the transport paused until it asks again. Small integers: a server holds one per
 * connection.
 */
const State = { Paused: 0, Flowing: 1, Waiting: 2, Held: 3 } as const
type State = typeof State[keyof typeof State]

const END = "end" as const

const secondReader = () =>
  new Error("A connection's input is read by two fibers at once: read it from one (share its frames with a PubSub)")

export class Inbox implements Input, Watched {
  private state: State = State.Paused
  /** The reads held for the consumer while it is busy, in order; none (no array) most of the time. */
  private held: Array<Uint8Array> | undefined = undefined
  /** What follows the held reads: the end of input or a failure; nothing is delivered after it. */
  private last: typeof END | ChatError.ChatError | undefined = undefined
  /** The waiting consumer's callback, while `Waiting`. */
  private consumer: Resume | undefined = undefined
  watchAt = Infinity
  watchIndex = -1
  /** The connection is closed: its timeouts are watched no more. */
  private stopped = false
  private armNow: (() => void) | undefined = undefined
  private lastDataAt = 0
  private frameStartedAt = -1
  private readonly owner: Owner
  private readonly watchdog: Watchdog | undefined
  private readonly dispatcher: Scheduler.SchedulerDispatcher
  /** The idle timeout (Infinity: none), which also bounds an upgrade's handshake, and its error. */
  readonly idleMillis: number
  private readonly frameMillis: number
  readonly idleError: () => ChatError.ChatError
  private readonly frameError: () => ChatError.ChatError

  constructor(owner: Owner, options: {
    /** Watches the timeouts; undefined when there are none. */
    readonly watchdog: Watchdog | undefined
    readonly dispatcher: Scheduler.SchedulerDispatcher
    readonly idleMillis: number | undefined
    readonly frameMillis: number | undefined
    readonly idleError: () => ChatError.ChatError
    readonly frameError: () => ChatError.ChatError
  }) {
    this.owner = owner
    this.watchdog = options.watchdog
    this.dispatcher = options.dispatcher
    this.idleMillis = options.idleMillis ?? Infinity
    this.frameMillis = options.frameMillis ?? Infinity
    this.idleError = options.idleError
    this.frameError = options.frameError
    if (this.watchdog !== undefined) this.lastDataAt = this.watchdog.clock.currentTimeMillisUnsafe()
  }

  /** Starts the watching of this input's timeouts; `stop` ends it. */
  watch(): void {
    if (this.watchdog === undefined) return
    this.lastDataAt = this.watchdog.clock.currentTimeMillisUnsafe()
    this.armAt(this.lastDataAt + this.idleMillis)
  }

  data(chunk: Uint8Array): void {
    if (this.last !== undefined) return
    if (this.watchdog !== undefined) this.lastDataAt = this.watchdog.clock.currentTimeMillisUnsafe()
    if (this.state === State.Waiting) {
      const reader = this.owner.reader
      reader.holdOutput()
      try {
        this.handOver(this.made([chunk]))
      } finally {
        reader.releaseOutput()
      }
      return
    }
    if (this.held === undefined) this.held = [chunk]
    else this.held.push(chunk)
    if (this.state === State.Held) return
    this.state = State.Held
    this.owner.transport.pause()
  }

  end(): void {
    this.settle(END)
  }

  fail(error: ChatError.ChatError): void {
    this.settle(error)
  }

  private settle(last: typeof END | ChatError.ChatError): void {
    if (this.last !== undefined) return
    this.last = last
    // a consumer waiting has nothing held: it learns of the end now; held reads come first otherwise
    if (this.state === State.Waiting) this.handOver(last === END ? this.made(undefined) : Effect.fail(last))
  }

  /** Resumes the waiting consumer with `effect`: it is busy with it from now on, the transport flowing. */
  private handOver(effect: Effect.Effect<unknown, unknown>): void {
    const consumer = this.consumer!
    this.consumer = undefined
    this.state = State.Flowing
    consumer(effect)
  }

  /**
   * The next reads, made into `onRead`'s effect: what arrived since the last call (or, waiting, the next read),
   * undefined at the end.
   */
  readonly next: Effect.Effect<unknown, unknown> = Effect.callback(
    (resume) => {
      // one input, one reader: a second would take reads from the first, which would wait forever
      if (this.state === State.Waiting) return resume(Effect.die(secondReader()))
      const paused = this.state !== State.Flowing
      const held = this.held
      if (held !== undefined) {
        this.held = undefined
        this.state = State.Flowing
        resume(this.made(held))
        if (this.last === undefined && paused) this.owner.transport.resume()
        return
      }
      const last = this.last
      if (last !== undefined) return resume(last === END ? this.made(undefined) : Effect.fail(last))
      this.consumer = resume
      this.state = State.Waiting
      if (paused) this.owner.transport.resume()
      // The frame deadline passed while the handler was busy: the watchdog enforces it, a turn from now, once
      // bytes the transport already holds (it was paused) had their chance to complete the frame.
      const watchdog = this.watchdog
      if (watchdog !== undefined && watchdog.clock.currentTimeMillisUnsafe() >= this.frameDeadline) {
        this.dispatcher.scheduleTask(this.armNow ??= () => this.armAt(watchdog.clock.currentTimeMillisUnsafe()), 0)
      }
      return this.cancelWait
    }
  )

  /**
   * `onRead`'s effect. It runs in the transport's callback, outside any fiber: what it throws (a machine's
   * defect) becomes the consumer's defect instead of an uncaught exception.
   */
  private made(chunks: ReadonlyArray<Uint8Array> | undefined): Effect.Effect<unknown, unknown> {
    try {
      return this.owner.reader.onRead(chunks)
    } catch (defect) {
      return Effect.die(defect)
    }
  }

  /** Input of another kind arrived (an upgrade's handshake): the idle period starts again now. */
  touch(): void {
    if (this.watchdog !== undefined) this.lastDataAt = this.watchdog.clock.currentTimeMillisUnsafe()
  }

  /** Drops the reads held for the consumer (an upgrade's plaintext); true when there were some. */
  discardHeld(): boolean {
    const dropped = this.held !== undefined
    this.held = undefined
    return dropped
  }

  /** True once the input ended or failed: whoever reads it learns so. */
  get isOver(): boolean {
    return this.last !== undefined
  }

  /** Resumes the consumer waiting for input, if any, with `effect` instead of a read. */
  wake(effect: Effect.Effect<unknown, unknown>): void {
    if (this.state === State.Waiting) this.handOver(effect)
  }

  /** An interrupted wait: one consumer waits at a time, so it is the one to forget. */
  private readonly cancelWait = Effect.sync(() => {
    if (this.state !== State.Waiting) return
    this.consumer = undefined
    this.state = State.Flowing
  })

  /**
   * Tells the watchdog, as the consumer is about to wait, whether a frame is in progress and whether one was
   * completed since it last said: a frame's deadline runs from the read that started it.
   */
  frameInProgress(inProgress: boolean, completedOne: boolean): void {
    if (!inProgress) {
      this.frameStartedAt = -1
    } else if (this.frameStartedAt < 0 || completedOne) {
      this.frameStartedAt = this.lastDataAt
      if (this.frameDeadline < this.watchAt) this.armAt(this.frameDeadline)
    }
  }

  /** When the frame in progress times out: Infinity when there is none, or no frame timeout. */
  private get frameDeadline(): number {
    return this.frameStartedAt < 0 ? Infinity : this.frameStartedAt + this.frameMillis
  }

  /** Has the watchdog look at this input at `at`, unless the connection is closed. */
  private armAt(at: number): void {
    if (!this.stopped) this.watchdog?.arm(this, at)
  }

  /** The watchdog's look at the deadlines: fails a wait that is over one; says when to look next. */
  check(now: number): number {
    // input is over (or failed), or the connection closed: nobody waits for more of it
    if (this.last !== undefined || this.stopped) return Infinity
    const frame = now >= this.frameDeadline
    if (this.state === State.Waiting && (frame || now >= this.lastDataAt + this.idleMillis)) {
      // a reader that catches the timeout and reads again gets a fresh period
      if (frame) this.frameStartedAt = now
      else this.lastDataAt = now
      this.handOver(Effect.fail(frame ? this.frameError() : this.idleError()))
      // the consumer ran at once, and may have closed the connection
      if (this.last !== undefined || this.stopped) return Infinity
    }
    // the idle deadline passed while the handler was busy: the time it spent is not the peer's idleness
    if (now >= this.lastDataAt + this.idleMillis) this.lastDataAt = now
    // a frame deadline that passed while the handler was busy is enforced when it next waits (`next`)
    const frameAt = this.frameDeadline
    return Math.min(this.lastDataAt + this.idleMillis, frameAt > now ? frameAt : Infinity)
  }

  /** Stops the watching of this input's timeouts: the connection is closed. */
  stop(): void {
    this.stopped = true
    this.watchdog?.disarm(this)
  }
}

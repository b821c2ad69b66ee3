/**
 * A connection's output: asynchat's producer FIFO, bounded in bytes, written with no fiber of its own while
 * nothing has to wait.
 *
 * - `push` appends buffers; `pushStream` appends a producer (a Stream) that runs to the end before anything
 *   queued after it; `closeWhenDone` appends a marker that ends the output once everything before it is
 *   written, and the connection with it; `endOutput` one that ends the output alone (a half-close: our FIN),
 *   the input going on.
 * - Buffers count against a high-water mark; a `push` that finds the queue at or above it suspends until the
 *   queue drains to the low-water mark (Netty's 64/32 KiB by default), so a peer that stops reading cannot
 *   grow our memory.
 * - Every buffer queued in a row goes to the transport in one write, so a thousand pushed lines cost a handful
 *   of syscalls, not a thousand. One `flush` writes: the connection calls it when its handler has consumed a
 *   read; what is queued otherwise (from another fiber, after the last read) is flushed on the next scheduler
 *   turn. Only what has to wait (a transport that pushes back, a producer, the close marker) gets a writer
 *   fiber, which ends when the queue is empty: an idle connection holds none. Who writes at any moment is one
 *   small-integer state (`Writer`).
 */
import { Cause, type Context, Deferred, Effect, Exit, Fiber, type Scheduler, Stream } from "effect"
import type * as Arr from "effect/Array"
import { Buffer } from "node:buffer"
import * as ChatError from "../ChatError.ts"
import type { Transport } from "./transport.ts"

/** A producer queued by `pushStream`, with the services it was pushed with. */
interface Producer {
  readonly _tag: "Producer"
  readonly stream: Stream.Stream<Uint8Array, unknown, never>
}

/**
 * Something done in order with the output (an upgrade to TLS): after everything queued before it is written,
 * before anything queued after; `dropped` is told when the output ends first.
 */
export interface Step {
  readonly _tag: "Step"
  readonly run: Effect.Effect<void, ChatError.ChatError>
  readonly dropped: () => void
}

const CLOSE = { _tag: "Close" } as const
const END = { _tag: "End" } as const

type Item = Uint8Array | Producer | Step | typeof CLOSE | typeof END

const isStep = (item: Item): item is Step => !(item instanceof Uint8Array) && item._tag === "Step"

/** What `discard` keeps: the steps and the end the output was told of, not what it was to write. */
const isKept = (item: Item): boolean => !(item instanceof Uint8Array) && item._tag !== "Producer"

/** What `offer` did: queued the data, or dropped it because the queue is full or the output is ending. */
export const Offered = { Queued: 0, Full: 1, Closed: 2 } as const
export type Offered = typeof Offered[keyof typeof Offered]

/**
 * Where the output is in its life: open; ending after everything queued (`closeWhenDone`: the connection with
 * it; `endOutput`: the output alone); over (nothing more is written), with the connection or as a half-close
 * whose input goes on. Small integers: a server holds one per connection.
 */
const Phase = { Open: 0, Closing: 1, Ending: 2, Over: 3, HalfClosed: 4 } as const
type Phase = typeof Phase[keyof typeof Phase]

/**
 * Who writes now: nobody; a wake is scheduled for the next turn; the handler runs a read in the transport's
 * callback (what it queues is written when it is done); a write is being handed to the transport (what that
 * write makes us queue, an in-process peer answering inside it, waits for it); a writer fiber works through
 * what has to wait. Only when nobody writes may a write start.
 */
const Writer = { Idle: 0, Scheduled: 1, Held: 2, Writing: 3, Running: 4 } as const
type Writer = typeof Writer[keyof typeof Writer]

/** How much output a connection may queue: shared by a server's connections. */
export interface Limits {
  readonly highWaterMark: number
  readonly lowWaterMark: number
  readonly outputLimit: number
}

/** What an outbox needs of its connection. */
export interface Owner {
  readonly transport: Pick<Transport, "write" | "finish">
  /** Told the byte count of each batch handed to the transport (metrics). */
  readonly counters: { readonly written: (bytes: number) => void }
  /** Told once of `done`'s outcome, but for a half-close's success. */
  outputDone(exit: Exit.Exit<void, ChatError.ChatError>): void
}

export class Outbox {
  private items: Array<Item> = []
  /** Producers and close markers in `items`: while there are none, the queue is all buffers. */
  private markers = 0
  /** Bytes of the buffers in `items`; `queuedBytes` also counts a batch the transport has yet to take. */
  private itemBytes = 0
  private head = 0
  private queuedBytes = 0
  private phase: Phase = Phase.Open
  private writer: Writer = Writer.Idle
  private writerFiber: Fiber.Fiber<void, ChatError.ChatError> | undefined = undefined
  // made on first use: an idle connection should hold as little as it can
  private runWake: (() => void) | undefined = undefined
  private draining: Effect.Effect<void, ChatError.ChatError> | undefined = undefined
  private spaceWaiters: Array<() => void> | undefined = undefined
  private doneDeferred: Deferred.Deferred<void, ChatError.ChatError> | undefined = undefined
  private doneExit: Exit.Exit<void, ChatError.ChatError> | undefined = undefined
  private readonly owner: Owner
  private readonly limits: Limits
  private readonly context: Context.Context<never>
  private readonly dispatcher: Scheduler.SchedulerDispatcher

  /**
   * `context` holds the services a writer fiber runs with (the connection's), and `dispatcher` is the scheduler
   * whose turns wake the output: a server's connections share it, so their wakes run in one turn.
   */
  constructor(
    owner: Owner,
    limits: Limits,
    context: Context.Context<never>,
    dispatcher: Scheduler.SchedulerDispatcher
  ) {
    this.owner = owner
    this.limits = limits
    this.context = context
    this.dispatcher = dispatcher
  }

  /**
   * The output's outcome: success once the close marker is reached (everything before it written), failure
   * when a write or a producer failed. Made when first asked for (a handler's end waits for it).
   */
  get done(): Deferred.Deferred<void, ChatError.ChatError> {
    if (this.doneDeferred !== undefined) return this.doneDeferred
    const done = this.doneDeferred = Deferred.makeUnsafe<void, ChatError.ChatError>()
    if (this.doneExit !== undefined) Deferred.doneUnsafe(done, this.doneExit)
    return done
  }

  /** True once the output is over: nothing more is written, nobody waits on the queue. */
  private get isOver(): boolean {
    return this.phase >= Phase.Over
  }

  /** True once `endOutput` was queued: the output ends alone, and the connection goes on reading. */
  get isHalfClosed(): boolean {
    return this.phase === Phase.Ending || this.phase === Phase.HalfClosed
  }

  /** True once `closeWhenDone` or `endOutput` was queued or the output ended: later pushes are dropped. */
  get isClosing(): boolean {
    return this.phase !== Phase.Open
  }

  /** Queues `data`; suspends while the queue is at or above the high-water mark. */
  push(data: ReadonlyArray<Uint8Array | string>): Effect.Effect<void> {
    if (this.isClosing) return Effect.void
    this.enqueue(data)
    return this.queuedBytes >= this.limits.highWaterMark ? this.awaitSpace : Effect.void
  }

  /**
   * Queues `data` unless the queue already holds `outputLimit` bytes (`Full`) or the output is ending or over
   * (`Closed`): nothing is queued then.
   */
  offer(data: ReadonlyArray<Uint8Array | string>): Offered {
    if (this.isClosing) return Offered.Closed
    if (this.queuedBytes >= this.limits.outputLimit) return Offered.Full
    this.enqueue(data)
    return Offered.Queued
  }

  /** Queues `data` (the array stays the caller's: an effect that pushes it may run again). */
  private enqueue(data: ReadonlyArray<Uint8Array | string>): void {
    // an empty queue and only non-empty buffers (the usual case): one copy of the array, not a push each
    let size = this.items.length === 0 ? sizeOfBuffers(data) : -1
    if (size > 0) {
      this.items = data.slice() as Array<Item>
    } else {
      size = 0
      for (let i = 0; i < data.length; i++) {
        const d = data[i]
        const bytes = typeof d === "string" ? Buffer.from(d, "utf8") : d
        if (bytes.length === 0) continue
        this.items.push(bytes)
        size += bytes.length
      }
    }
    this.queuedBytes += size
    this.itemBytes += size
    this.wake()
  }

  /** Queues a producer; it runs with the services of the caller. */
  pushStream<E, R>(stream: Stream.Stream<Uint8Array, E, R>): Effect.Effect<void, never, R> {
    return Effect.contextWith((context: Context.Context<R>) => {
      if (this.isClosing) return Effect.void
      this.items.push({ _tag: "Producer", stream: Stream.provideContext(stream, context) })
      this.markers++
      this.wake()
      return this.queuedBytes >= this.limits.highWaterMark ? this.awaitSpace : Effect.void
    })
  }

  /** Queues `step`, run by the writer once everything queued before it is written. */
  step(step: Omit<Step, "_tag">): void {
    if (this.isOver) return step.dropped()
    this.items.push({ _tag: "Step", run: step.run, dropped: step.dropped })
    this.markers++
    this.wake()
  }

  /** Queues the close marker: the output ends after everything queued before it. */
  closeWhenDone(): void {
    this.queueEnd(Phase.Closing, CLOSE)
  }

  /** Queues the end marker: the output ends (our FIN) after everything queued before it; input goes on. */
  endOutput(): void {
    this.queueEnd(Phase.Ending, END)
  }

  private queueEnd(phase: typeof Phase.Closing | typeof Phase.Ending, marker: typeof CLOSE | typeof END): void {
    if (this.isClosing) return
    this.phase = phase
    this.items.push(marker)
    this.markers++
    this.wake()
  }

  /** Drops everything queued (asynchat's `discard_buffers`, output side); a queued step, close or end stays queued. */
  discard(): void {
    this.items = this.markers === 0 ? [] : this.items.slice(this.head).filter(isKept)
    this.markers = this.items.length
    this.head = 0
    this.queuedBytes -= this.itemBytes
    this.itemBytes = 0
    this.releaseSpace()
  }

  /**
   * The flush, for input and output alike: writes the buffers at the head of the queue now, in one write. The
   * connection calls it when its handler has consumed every frame of a read and is about to wait for the next,
   * the natural end of a batch, and a wake calls it for what was queued otherwise (from another fiber, after
   * the last read). What is left to wait for the transport's room is returned: the input side waits for it
   * itself, which stops reading from a peer that does not read. What the write made us queue (an in-process
   * peer answering inside it), a producer or an end marker goes to a writer fiber on the next turn. Undefined
   * when there is nothing to wait for, or somebody else writes (a writer fiber keeps the order).
   */
  flush(): Effect.Effect<void, ChatError.ChatError> | undefined {
    if (!this.mayWrite) return undefined
    const pending = this.writeHead()
    if (this.head !== this.items.length) this.wake()
    return pending
  }

  /**
   * Ends the output with the connection: a writer fiber at work is interrupted, waiting pushes released. What is
   * left to wait for: the writer's end, a producer's finalizers with it, before the connection's scope is closed.
   */
  close(): Effect.Effect<void> | undefined {
    const writer = this.writerFiber
    writer?.interruptUnsafe()
    if (!this.isOver) this.stop(Phase.Over)
    return writer === undefined ? undefined : Effect.asVoid(Fiber.await(writer))
  }

  /**
   * True when a write may start: no other write is under way (the handler running a read in the transport's
   * callback may write: its own flush), the output goes on, and something is queued.
   */
  private get mayWrite(): boolean {
    return this.writer <= Writer.Held && !this.isOver && this.head !== this.items.length
  }

  /** Takes the buffers at the head of the queue, up to a producer or the close marker: one transport write. */
  private takeBuffers(): { readonly batch: Arr.NonEmptyReadonlyArray<Uint8Array>; readonly size: number } {
    if (this.head === 0 && this.markers === 0) {
      // only buffers are queued (the usual case): hand the whole queue over instead of copying it
      const batch = this.items as unknown as Arr.NonEmptyReadonlyArray<Uint8Array>
      const size = this.itemBytes
      this.items = []
      this.itemBytes = 0
      return { batch, size }
    }
    let size = 0
    const batch: Array<Uint8Array> = []
    while (this.head < this.items.length) {
      const next = this.items[this.head]
      if (!(next instanceof Uint8Array)) break
      batch.push(next)
      size += next.length
      this.head++
    }
    this.compact()
    this.itemBytes -= size
    return { batch: batch as unknown as Arr.NonEmptyReadonlyArray<Uint8Array>, size }
  }

  /**
   * Writes the buffers at the head of the queue, if the head is buffers, from outside a writer fiber. The write
   * may run our own handler at once (an in-process peer that answers inside it), and what that handler queues
   * must wait for this write rather than start another: `Writing` meanwhile, so the caller, which looks at the
   * queue after, writes it in order.
   */
  private writeHead(): Effect.Effect<void, ChatError.ChatError> | undefined {
    if (!(this.items[this.head] instanceof Uint8Array)) return undefined
    const before = this.writer
    this.writer = Writer.Writing
    try {
      return this.writeBuffers()
    } finally {
      this.writer = before
    }
  }

  /**
   * Hands the buffers at the head of the queue to the transport: undefined when it took them at once, else
   * the wait for its room. Either way they are out of the queue: the transport has them, and bounds what it
   * holds by making the writer wait.
   */
  private writeBuffers(): Effect.Effect<void, ChatError.ChatError> | undefined {
    const { batch, size } = this.takeBuffers()
    const pending = this.send(batch, size)
    this.queuedBytes -= size
    if (this.queuedBytes <= this.limits.lowWaterMark) this.releaseSpace()
    return pending
  }

  /** The one route to the transport, for queued buffers and producers' chunks alike. */
  private send(
    batch: Arr.NonEmptyReadonlyArray<Uint8Array>,
    size: number
  ): Effect.Effect<void, ChatError.ChatError> | undefined {
    this.owner.counters.written(size)
    return this.owner.transport.write(batch, size)
  }

  /**
   * Writes what is queued on the next scheduler turn, not synchronously: a handler's pushes while it works
   * through a batch of frames all land in the queue first, and go to the transport in one write.
   */
  private wake(): void {
    if (this.writer !== Writer.Idle || this.isOver) return
    this.writer = Writer.Scheduled
    this.dispatcher.scheduleTask(this.runWake ??= () => this.afterWake(), 0)
  }

  /** Holds wakes while the handler runs a read in the transport's callback; `release` writes what it queued. */
  hold(): void {
    if (this.writer <= Writer.Scheduled) this.writer = Writer.Held
  }

  /** Writes what was queued since `hold`, now (a writer fiber waits if the transport is full). */
  release(): void {
    if (this.writer !== Writer.Held) return
    this.writer = Writer.Idle
    if (this.head !== this.items.length) this.afterWake()
  }

  /** A wake's flush: what has to wait, for room or for a producer, gets a writer fiber. */
  private afterWake(): void {
    // a wake scheduled before a hold, an inline flush or a writer fiber finds the output in other hands
    if (this.writer === Writer.Scheduled) this.writer = Writer.Idle
    if (!this.mayWrite) return
    const pending = this.writeHead()
    // the transport took it all: no fiber needed
    if (pending === undefined && this.head === this.items.length) return
    this.startWriter(pending)
  }

  /** Runs a writer fiber until the queue is empty, the close marker is reached, or a write fails. */
  private startWriter(first: Effect.Effect<void, ChatError.ChatError> | undefined): void {
    this.writer = Writer.Running
    const fiber = Effect.runForkWith(this.context)(
      first === undefined ? this.drain : Effect.andThen(first, this.drain)
    )
    this.writerFiber = fiber
    fiber.addObserver((exit) => {
      if (this.writerFiber === fiber) this.writerFiber = undefined
      this.writer = Writer.Idle
      if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) this.finish(exit)
      else this.wake()
    })
  }

  /** Writes the queue until it is empty, producers and the close marker included. */
  private get drain(): Effect.Effect<void, ChatError.ChatError> {
    return this.draining ??= Effect.suspend(() => this.drainStep())
  }

  private drainStep(): Effect.Effect<void, ChatError.ChatError> {
    if (this.isOver || this.head === this.items.length) return Effect.void
    const item = this.items[this.head]
    if (item instanceof Uint8Array) {
      const pending = this.writeBuffers()
      return pending === undefined ? this.drain : Effect.andThen(pending, this.drain)
    }
    this.head++
    this.markers--
    this.compact()
    if (item._tag === "Close" || item._tag === "End") {
      return Effect.andThen(this.owner.transport.finish, Effect.sync(() => this.finish(Exit.void)))
    }
    if (item._tag === "Step") return Effect.andThen(item.run, this.drain)
    return Effect.andThen(this.runProducer(item), this.drain)
  }

  private runProducer(producer: Producer): Effect.Effect<void, ChatError.ChatError> {
    return Stream.runForEachArray(producer.stream, (chunks) => {
      let size = 0
      for (let i = 0; i < chunks.length; i++) size += chunks[i].length
      return size === 0 ? Effect.void : this.send(chunks, size) ?? Effect.void
    }).pipe(
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause as Cause.Cause<never>) : Effect.fail(
          isWriteFailure(cause) ? Cause.squash(cause) as ChatError.ChatError : new ChatError.ChatError({
            reason: new ChatError.ProducerFailed({ cause: Cause.squash(cause) })
          })
        )
      )
    )
  }

  /**
   * The output is over: nothing more is written, nobody may wait on the queue. The connection is told, but for
   * the end `endOutput` asked for: a half-close ends the output alone, and the input goes on.
   */
  private finish(exit: Exit.Exit<void, ChatError.ChatError>): void {
    if (this.isOver) return
    const halfClose = this.phase === Phase.Ending && Exit.isSuccess(exit)
    this.stop(halfClose ? Phase.HalfClosed : Phase.Over)
    this.doneExit = exit
    if (this.doneDeferred !== undefined) Deferred.doneUnsafe(this.doneDeferred, exit)
    if (!halfClose) this.owner.outputDone(exit)
  }

  private get awaitSpace(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.isOver || this.queuedBytes <= this.limits.lowWaterMark) return resume(Effect.void)
      const waiter = () => resume(Effect.void)
      const waiters = this.spaceWaiters ??= []
      waiters.push(waiter)
      return Effect.sync(() => {
        const i = waiters.indexOf(waiter)
        if (i >= 0) waiters.splice(i, 1)
      })
    })
  }

  private releaseSpace(): void {
    const waiters = this.spaceWaiters
    if (waiters === undefined || waiters.length === 0) return
    this.spaceWaiters = undefined
    for (const w of waiters) w()
  }

  private stop(phase: typeof Phase.Over | typeof Phase.HalfClosed): void {
    this.phase = phase
    const dropped = this.markers > 0 ? this.items.slice(this.head).filter(isStep) : []
    this.items = []
    this.markers = 0
    this.head = 0
    this.queuedBytes = 0
    this.itemBytes = 0
    this.releaseSpace()
    // told once the queue is cleared: what they resume may queue or discard again
    for (const step of dropped) step.dropped()
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items.length = 0
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }
}

/** The bytes in `data` when it is all non-empty buffers; -1 when it holds a string or an empty buffer. */
const sizeOfBuffers = (data: ReadonlyArray<Uint8Array | string>): number => {
  let size = 0
  for (let i = 0; i < data.length; i++) {
    const d = data[i]
    if (typeof d === "string" || d.length === 0) return -1
    size += d.length
  }
  return size
}

const isWriteFailure = (cause: Cause.Cause<unknown>): boolean => {
  const error = Cause.squash(cause)
  return error instanceof ChatError.ChatError && error.reason._tag === "WriteFailed"
}

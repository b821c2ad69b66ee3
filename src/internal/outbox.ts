/**
 * A connection's output: asynchat's producer FIFO, bounded in bytes, drained by one writer fiber.
 *
 * - `push` appends buffers; `pushStream` appends a producer (a Stream) that the writer runs to the end before
 *   anything queued after it; `closeWhenDone` appends a marker that ends the writer once everything before it
 *   is written.
 * - Buffers count against a high-water mark; a `push` that finds the queue at or above it suspends until the
 *   writer drains it to the low-water mark (Netty's 64/32 KiB by default), so a peer that stops reading cannot
 *   grow our memory.
 * - The writer takes every buffer queued in a row and hands them to the transport in one write (corked:
 *   one flush), so a thousand pushed lines cost a handful of syscalls, not a thousand.
 */
import { Cause, type Context, Effect, type Scheduler, Stream } from "effect"
import type * as Arr from "effect/Array"
import { Buffer } from "node:buffer"
import * as ChatError from "../ChatError.ts"
import type { Transport } from "./transport.ts"

/** A producer queued by `pushStream`, with the services it was pushed with. */
interface Producer {
  readonly _tag: "Producer"
  readonly stream: Stream.Stream<Uint8Array, unknown, never>
}

const CLOSE = { _tag: "Close" } as const

type Item = Uint8Array | Producer | typeof CLOSE

/** Called with the byte count of each batch handed to the transport (metrics). */
export type OnWrite = (bytes: number) => void

/** The transport's write: undefined when it took the batch at once, else an effect to wait for room. */
export type Write = Transport["write"]

/** @internal */
export class Outbox {
  private items: Array<Item> = []
  /** Producers and close markers in `items`: while there are none, the queue is all buffers. */
  private markers = 0
  /** Bytes of the buffers in `items`; `queuedBytes` also counts a batch the transport has yet to take. */
  private itemBytes = 0
  private head = 0
  private queuedBytes = 0
  private closing = false
  private stopped = false
  private writerWake: (() => void) | undefined = undefined
  private wakeScheduled = false
  private dispatcher: Scheduler.SchedulerDispatcher | undefined = undefined
  private readonly spaceWaiters: Array<() => void> = []
  /** Set by `run`: the transport's write, and the metrics' count of what it took. */
  private write: Write | undefined = undefined
  private onWrite: OnWrite = () => {}
  readonly highWaterMark: number
  readonly lowWaterMark: number
  readonly outputLimit: number

  constructor(highWaterMark: number, lowWaterMark: number, outputLimit: number) {
    this.highWaterMark = highWaterMark
    this.lowWaterMark = lowWaterMark
    this.outputLimit = outputLimit
  }

  /** Bytes queued and not yet handed to the transport. */
  get bytes(): number {
    return this.queuedBytes
  }

  /** True once `closeWhenDone` was queued or the writer stopped: later pushes are dropped. */
  get isClosing(): boolean {
    return this.closing || this.stopped
  }

  /** Queues `data`; suspends while the queue is at or above the high-water mark. */
  push(data: ReadonlyArray<Uint8Array | string>): Effect.Effect<void> {
    if (this.isClosing) return Effect.void
    this.enqueue(data)
    return this.queuedBytes >= this.highWaterMark ? this.awaitSpace : Effect.void
  }

  /** Queues `data` unless the queue already holds `outputLimit` bytes: false, with nothing queued, then. */
  offer(data: ReadonlyArray<Uint8Array | string>): boolean {
    if (this.isClosing) return true
    if (this.queuedBytes >= this.outputLimit) return false
    this.enqueue(data)
    return true
  }

  /** Queues `data`, taking the array over: callers pass their own rest arguments. */
  private enqueue(data: ReadonlyArray<Uint8Array | string>): void {
    let size = 0
    let plain = true
    for (let i = 0; i < data.length; i++) {
      const d = data[i]
      const length = typeof d === "string" ? -1 : d.length
      if (length <= 0) plain = false
      else size += length
    }
    if (plain && this.items.length === 0) {
      // the usual case, buffers into an empty queue: the array becomes the queue
      this.items = data as Array<Uint8Array>
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
      return this.queuedBytes >= this.highWaterMark ? this.awaitSpace : Effect.void
    })
  }

  /** Queues the close marker: the writer ends after everything queued before it. */
  closeWhenDone(): void {
    if (this.isClosing) return
    this.closing = true
    this.items.push(CLOSE)
    this.markers++
    this.wake()
  }

  /** Drops everything queued (asynchat's `discard_buffers`, output side); a queued close stays queued. */
  discard(): void {
    const keepClose = this.closing
    this.items = keepClose ? [CLOSE] : []
    this.markers = keepClose ? 1 : 0
    this.head = 0
    this.queuedBytes -= this.itemBytes
    this.itemBytes = 0
    this.releaseSpace()
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
   * Writes the queued buffers from the caller's fiber, when the writer fiber is idle: the connection calls it
   * when its handler has consumed every frame of a read and is about to wait for the next, the natural end of a
   * batch. Answers go out then, in one write, without waking the writer fiber; if the transport pushes back,
   * the caller waits for it to drain, which stops reading from a peer that does not read. Undefined when there is
   * nothing to write or the writer fiber is busy (it keeps the order: a producer in progress, say).
   */
  flushInline(): Effect.Effect<void, ChatError.ChatError> | undefined {
    if (this.writerWake === undefined || this.write === undefined || this.head === this.items.length) {
      return undefined
    }
    if (!(this.items[this.head] instanceof Uint8Array)) return undefined
    return this.writeBuffers(this.write)
  }

  /** Hands the buffers at the head of the queue to `write`: undefined when it took them at once. */
  private writeBuffers(write: Write): Effect.Effect<void, ChatError.ChatError> | undefined {
    const { batch, size } = this.takeBuffers()
    this.onWrite(size)
    const pending = write(batch, size)
    if (pending === undefined) {
      this.written(size)
      return undefined
    }
    return Effect.ensuring(pending, Effect.sync(() => this.written(size)))
  }

  /**
   * The writer loop: runs until the close marker is reached (success) or the transport or a producer fails.
   * Interrupting it leaves the queue as it is.
   */
  run(write: Write, onWrite: OnWrite): Effect.Effect<void, ChatError.ChatError> {
    this.write = write
    this.onWrite = onWrite
    const step: Effect.Effect<boolean, ChatError.ChatError> = Effect.suspend(() => {
      if (this.head === this.items.length) return Effect.as(this.awaitItems, true)
      const item = this.items[this.head]
      if (item instanceof Uint8Array) return Effect.as(this.writeBuffers(write) ?? Effect.void, true)
      this.head++
      this.markers--
      this.compact()
      if (item._tag === "Close") return Effect.succeed(false)
      return Effect.as(
        Stream.runForEachArray(item.stream, (chunks) => {
          let size = 0
          for (let i = 0; i < chunks.length; i++) size += chunks[i].length
          if (size === 0) return Effect.void
          onWrite(size)
          return write(chunks, size) ?? Effect.void
        }).pipe(
          Effect.catchCause((cause) =>
            Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause as Cause.Cause<never>) : Effect.fail(
              isWriteFailure(cause) ? Cause.squash(cause) as ChatError.ChatError : new ChatError.ChatError({
                reason: new ChatError.ProducerFailed({ cause: Cause.squash(cause), message: "A producer failed" })
              })
            )
          )
        ),
        true
      )
    })
    const loop: Effect.Effect<void, ChatError.ChatError> = Effect.flatMap(step, (more) => more ? loop : Effect.void)
    return Effect.withFiber((fiber) => {
      this.dispatcher = fiber.currentDispatcher
      return Effect.onExit(loop, () => Effect.sync(() => this.stop()))
    })
  }

  private get awaitItems(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.head < this.items.length) return resume(Effect.void)
      this.writerWake = () => resume(Effect.void)
      return Effect.sync(() => {
        this.writerWake = undefined
      })
    })
  }

  private get awaitSpace(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.stopped || this.queuedBytes <= this.lowWaterMark) return resume(Effect.void)
      const waiter = () => resume(Effect.void)
      this.spaceWaiters.push(waiter)
      return Effect.sync(() => {
        const i = this.spaceWaiters.indexOf(waiter)
        if (i >= 0) this.spaceWaiters.splice(i, 1)
      })
    })
  }

  /**
   * Wakes the writer on the scheduler, not synchronously: a handler's pushes while it works through a batch
   * of frames all land in the queue first, and the writer hands them to the transport in one write.
   */
  private wake(): void {
    if (this.writerWake === undefined || this.wakeScheduled || this.dispatcher === undefined) return
    this.wakeScheduled = true
    this.dispatcher.scheduleTask(this.runWake, 0)
  }

  private readonly runWake = (): void => {
    this.wakeScheduled = false
    // an inline flush may have written everything already: then the writer stays parked
    if (this.head === this.items.length) return
    const wake = this.writerWake
    this.writerWake = undefined
    wake?.()
  }

  private written(size: number): void {
    this.queuedBytes -= size
    if (this.queuedBytes <= this.lowWaterMark) this.releaseSpace()
  }

  private releaseSpace(): void {
    if (this.spaceWaiters.length === 0) return
    const waiters = this.spaceWaiters.splice(0)
    for (const w of waiters) w()
  }

  /** The writer is gone: nothing will drain the queue, so nobody may wait on it. */
  private stop(): void {
    this.stopped = true
    this.items = []
    this.markers = 0
    this.head = 0
    this.queuedBytes = 0
    this.itemBytes = 0
    this.releaseSpace()
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

const isWriteFailure = (cause: Cause.Cause<unknown>): boolean => {
  const error = Cause.squash(cause)
  return error instanceof ChatError.ChatError && error.reason._tag === "WriteFailed"
}

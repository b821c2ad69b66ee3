/**
 * An in-memory connection as a pair of Node `Duplex` streams with TCP's observable behaviour, so that a test
 * drives the same stream transport a server ships with:
 * - bytes written on one end are read on the other in order, cut into pieces by a chosen policy, each piece
 *   readable `delayMillis` after it was written, timed on the Effect clock (a `TestClock` releases them), and
 *   never inside the writer's `write()` call;
 * - each direction holds at most `capacity` bytes in flight (written, not yet taken by the reader), as TCP's
 *   windows do: a writer past it has its write held (`write()` returns false, `'drain'` comes once the reader
 *   takes bytes), and a reader that is paused stops taking;
 * - `end()` is a FIN (the peer reads to the last byte, then `'end'`; it may go on writing), and a stream whose
 *   two directions ended closes;
 * - `destroy()` is a close: what was in flight toward the destroyed end is dropped, the peer still reads what
 *   was in flight toward it and then its end, and the peer's writes from then on fail with ECONNRESET.
 */
import { Clock, Context, Effect, Exit, type Fiber } from "effect"
import { Buffer } from "node:buffer"
import { Duplex } from "node:stream"

/** How written bytes are cut into the pieces a reader receives. */
export type Split = (data: Uint8Array) => ReadonlyArray<Uint8Array>

/** mulberry32: a small seeded PRNG, so a random chunking is the same on every run. */
export const seeded = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * The cut of a chunking (`MemoryTransport.Chunking`): each write whole, pieces of a fixed size, or seeded random
 * pieces of 1 to `maxPiece` bytes (16 by default).
 */
export const splitOf = (
  chunking: "whole" | number | { readonly random: number; readonly maxPiece?: number | undefined }
): Split => {
  if (chunking === "whole") return (data) => [data]
  if (typeof chunking === "number") {
    if (!Number.isSafeInteger(chunking) || chunking < 1) throw new RangeError(`chunking must be >= 1, got ${chunking}`)
    return (data) => {
      const out: Array<Uint8Array> = []
      for (let i = 0; i < data.length; i += chunking) out.push(data.subarray(i, i + chunking))
      return out
    }
  }
  const random = seeded(chunking.random)
  const max = chunking.maxPiece ?? 16
  return (data) => {
    const out: Array<Uint8Array> = []
    for (let i = 0; i < data.length;) {
      const n = 1 + Math.floor(random() * max)
      out.push(data.subarray(i, i + n))
      i += n
    }
    return out
  }
}

/** Options of a {@link duplexPair}. */
export interface Options {
  /** How written bytes are cut into the pieces the other end reads. */
  readonly split: Split
  /** Latency of every piece, on the context's `Clock`. */
  readonly delayMillis: number
  /** Bytes in flight per direction (written, not yet taken by the reader) before a writer waits. */
  readonly capacity: number
  /** What the deliveries run with: its `Clock` (a `TestClock` in a test) times the delays. */
  readonly context: Context.Context<never>
  /**
   * Readable buffer of each end (default the smaller of `capacity` and 1 KiB): small, so that `capacity` stays
   * the bound on what a reader that stopped reading lets through.
   */
  readonly readableHighWaterMark?: number | undefined
  /** Writable buffer of each end before `write()` returns false (default Node's). */
  readonly writableHighWaterMark?: number | undefined
}

type Callback = (error?: Error | null) => void

/** What both directions of a pair share. */
interface Pair {
  readonly split: Split
  readonly delayMillis: number
  readonly capacity: number
  readonly context: Context.Context<never>
  readonly clock: Clock.Clock
}

/** What a write to an end whose peer is gone fails with, as a socket's does. */
const resetError = (): Error =>
  Object.assign(new Error("write ECONNRESET: connection reset by peer"), {
    code: "ECONNRESET",
    syscall: "write"
  })

/** What a write that was under way when its own end was destroyed is called back with, as Node does. */
const destroyedError = (): Error =>
  Object.assign(new Error("Cannot call write after a stream was destroyed"), { code: "ERR_STREAM_DESTROYED" })

const copy = (bytes: Uint8Array, start: number, end: number): Uint8Array =>
  Uint8Array.prototype.slice.call(bytes, start, end)

function onTick(flow: Flow): void {
  flow.tickQueued = false
  flow.pump()
}

/**
 * One direction of a pair: the pieces in flight from the writing end to `reader`, taken by the reader while it
 * wants data, and the writer's chunk that did not fit (accepted into flight as the reader makes room).
 */
class Flow {
  // pieces in flight are bytes[head..], each due at due[i] (kept only when there is a delay)
  private readonly bytes: Array<Uint8Array | undefined> = []
  private readonly due: Array<number> = []
  private head = 0
  /** Bytes written, not yet taken by the reader. */
  inFlight = 0
  /** The writer's FIN: after the last piece, the reader's end. */
  private ended = false
  private endPushed = false
  /** The reader is gone: nothing more is delivered, and writes fail. */
  private reset = false
  /** The reader asked for data (`_read`) and no push since said it had enough. */
  wanting = false
  private pumping = false
  private again = false
  private accepting = false
  tickQueued = false
  private timer: Fiber.Fiber<void> | undefined = undefined
  private held: Uint8Array | undefined = undefined
  private heldOwned = false
  /** Bytes of `held` already in flight. */
  heldOffset = 0
  private heldCallback: Callback | undefined = undefined
  reader!: MemoryDuplex
  private readonly pair: Pair
  private readonly onTimer: (exit: Exit.Exit<void>) => void

  constructor(pair: Pair) {
    this.pair = pair
    this.onTimer = (exit) => {
      if (!Exit.isSuccess(exit)) return
      this.timer = undefined
      this.pump()
    }
  }

  /** The writer's chunk: what fits goes in flight now, the rest as the reader takes bytes; then `callback`. */
  write(chunk: Uint8Array, owned: boolean, callback: Callback): void {
    if (this.reset) return callback(resetError())
    this.held = chunk
    this.heldOwned = owned
    this.heldOffset = 0
    this.heldCallback = callback
    this.accept()
  }

  /** The writer's FIN. */
  end(): void {
    if (this.ended) return
    this.ended = true
    this.wake()
  }

  /** The reader is destroyed: what is in flight is dropped, and the writer's current and later writes fail. */
  drop(): void {
    if (this.reset) return
    this.reset = true
    this.bytes.length = 0
    this.due.length = 0
    this.head = 0
    this.inFlight = 0
    const timer = this.timer
    this.timer = undefined
    timer?.interruptUnsafe()
    this.failHeld(resetError())
  }

  /** The writer is destroyed: the rest of its current chunk is lost, and what is in flight is followed by a FIN. */
  abandon(): void {
    this.failHeld(destroyedError())
    this.end()
  }

  private failHeld(error: Error): void {
    const callback = this.heldCallback
    this.held = undefined
    this.heldCallback = undefined
    this.heldOffset = 0
    // later, as a socket reports a failed write: not inside the destroy() that caused it
    if (callback !== undefined) process.nextTick(callback, error)
  }

  private accept(): void {
    // a callback below may write again (the writer's 'drain' listener): the loop takes that chunk too
    if (this.accepting) return
    this.accepting = true
    const capacity = this.pair.capacity
    let added = false
    try {
      while (this.held !== undefined && this.inFlight < capacity) {
        const chunk = this.held
        const start = this.heldOffset
        const end = Math.min(chunk.length, start + capacity - this.inFlight)
        // copied: the writer may reuse its buffer once called back
        this.enqueue(this.heldOwned ? chunk.subarray(start, end) : copy(chunk, start, end))
        added = true
        this.inFlight += end - start
        if (end < chunk.length) {
          this.heldOffset = end
        } else {
          const callback = this.heldCallback!
          this.held = undefined
          this.heldCallback = undefined
          this.heldOffset = 0
          callback()
        }
      }
    } finally {
      this.accepting = false
    }
    if (added) this.wake()
  }

  private enqueue(data: Uint8Array): void {
    const delay = this.pair.delayMillis
    const at = delay > 0 ? this.pair.clock.currentTimeMillisUnsafe() + delay : 0
    const pieces = this.pair.split(data)
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]
      if (piece.length === 0) continue
      this.bytes.push(piece)
      if (delay > 0) this.due.push(at)
    }
  }

  /**
   * A delivery on a turn of the event loop of its own, as a socket's read comes in its poll phase: never inside
   * the writer's `write()`, and interleaved with the scheduler's turns (Effect's run on `setImmediate` too).
   */
  wake(): void {
    if (this.tickQueued || this.reset) return
    this.tickQueued = true
    setImmediate(onTick, this)
  }

  /** Hands the reader what is due while it wants data. */
  pump(): void {
    // a push may call back into us (a 'data' listener reading, destroying, writing): the outer call goes on
    if (this.pumping) {
      this.again = true
      return
    }
    this.pumping = true
    try {
      do {
        this.again = false
        this.deliver()
      } while (this.again && !this.reset)
    } finally {
      this.pumping = false
    }
  }

  /**
   * Pushes what is due while the reader wants it: at most one window (`capacity`) a delivery, as a socket's read
   * gets at most what its kernel buffer holds. The writer's held chunk then refills the window, for the next.
   */
  private deliver(): void {
    if (this.reset) return
    const reader = this.reader
    const delayed = this.pair.delayMillis > 0
    const now = delayed ? this.pair.clock.currentTimeMillisUnsafe() : 0
    let taken = 0
    while (this.wanting && this.head < this.bytes.length) {
      if (delayed && this.due[this.head] > now) break
      const piece = this.bytes[this.head]!
      this.bytes[this.head] = undefined
      this.head++
      taken += piece.length
      // a _read during the push (a listener that reads) sets it again
      this.wanting = false
      if (reader.push(piece)) this.wanting = true
      if (this.reset) return
    }
    this.inFlight -= taken
    // room again: the writer's held chunk goes on, delivered on a turn of its own
    if (taken > 0 && this.held !== undefined) this.accept()
    this.compact()
    if (this.head < this.bytes.length) {
      if (delayed && this.timer === undefined && this.due[this.head] > now) {
        this.timer = Effect.runForkWith(this.pair.context)(Effect.sleep(this.due[this.head] - now))
        this.timer.addObserver(this.onTimer)
      }
    } else if (this.ended && !this.endPushed) {
      this.endPushed = true
      reader.push(null)
    }
  }

  private compact(): void {
    const head = this.head
    if (head === this.bytes.length) {
      this.bytes.length = 0
      this.due.length = 0
      this.head = 0
    } else if (head >= 1024 && head * 2 >= this.bytes.length) {
      this.bytes.splice(0, head)
      if (this.due.length > 0) this.due.splice(0, head)
      this.head = 0
    }
  }
}

/** One end of an in-memory connection: reads what the peer wrote, writes what the peer reads. */
export class MemoryDuplex extends Duplex {
  private readonly incoming: Flow
  readonly outgoing: Flow

  constructor(
    incoming: Flow,
    outgoing: Flow,
    readableHighWaterMark: number,
    writableHighWaterMark: number | undefined
  ) {
    super({
      allowHalfOpen: true,
      readableHighWaterMark,
      ...(writableHighWaterMark === undefined ? {} : { writableHighWaterMark })
    })
    this.incoming = incoming
    this.outgoing = outgoing
  }

  /** Bytes this end wrote that the peer has not taken yet (what a socket's kernel buffers hold). */
  get bytesInFlight(): number {
    return this.outgoing.inFlight
  }

  // Not a delivery now: Node asks again at once after each push (its read-ahead), and a socket's next read comes
  // on a turn of its own, after the scheduler's
  override _read(): void {
    this.incoming.wanting = true
    this.incoming.wake()
  }

  override _write(chunk: Uint8Array, _encoding: BufferEncoding, callback: Callback): void {
    this.outgoing.write(chunk, false, callback)
  }

  override _writev(chunks: Array<{ chunk: Uint8Array }>, callback: Callback): void {
    if (chunks.length === 1) return this.outgoing.write(chunks[0].chunk, false, callback)
    this.outgoing.write(Buffer.concat(chunks.map((c) => c.chunk)), true, callback)
  }

  override _final(callback: Callback): void {
    this.outgoing.end()
    callback()
  }

  override _destroy(error: Error | null, callback: Callback): void {
    this.incoming.drop()
    this.outgoing.abandon()
    callback(error)
  }
}

// Node counts a write as buffered until it is called back, and a held write is called back only once all of it
// is in flight: a big write to a slow reader would look stalled. What is in flight is no longer the stream's (a
// socket's kernel buffers hold it), so the length leaves out the part of the held write that already went.
const nodeWritableLength = Object.getOwnPropertyDescriptor(Duplex.prototype, "writableLength")!.get!
Object.defineProperty(MemoryDuplex.prototype, "writableLength", {
  configurable: true,
  enumerable: false,
  get(this: MemoryDuplex): number {
    return (nodeWritableLength.call(this) as number) - this.outgoing.heldOffset
  }
})

/** The two ends of a new in-memory connection. */
export const duplexPair = (options: Options): readonly [MemoryDuplex, MemoryDuplex] => {
  const { capacity, delayMillis } = options
  if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be >= 1, got ${capacity}`)
  if (!(delayMillis >= 0) || !Number.isFinite(delayMillis)) {
    throw new RangeError(`delayMillis must be a finite number >= 0, got ${delayMillis}`)
  }
  const pair: Pair = {
    split: options.split,
    delayMillis,
    capacity,
    context: options.context,
    clock: Context.get(options.context, Clock.Clock)
  }
  const readable = options.readableHighWaterMark ?? Math.min(capacity, 1024)
  const toB = new Flow(pair)
  const toA = new Flow(pair)
  const a = new MemoryDuplex(toA, toB, readable, options.writableHighWaterMark)
  const b = new MemoryDuplex(toB, toA, readable, options.writableHighWaterMark)
  toB.reader = b
  toA.reader = a
  return [a, b]
}

/**
 * The framing engine: a mutable, allocation-lean cutter shared by `Framing` (static and machine forms) and
 * the connection's imperative `setTerminator`. Everything here is synchronous; the Stream wrapper lives in
 * `Framing.ts`.
 *
 * Invariants:
 * - `acc[0, accLen)` holds the bytes of the current, unfinished frame and never contains a whole delimiter,
 *   so no byte is searched twice: a new chunk is searched once, plus at most `2 * (delimiter - 1)` bytes
 *   around the boundary.
 * - Frames that sit in one chunk are handed out as `subarray` views; only a frame that spans chunks is
 *   copied, once, into `acc`.
 * - `acc` never grows past `maxFrameLength + delimiter length - 1` bytes (or the count, for a length).
 */
import { Buffer } from "node:buffer"
import type * as Framing from "../Framing.ts"
import * as Terminator from "../Terminator.ts"

/** Why the engine stopped: the frame was too long, or a terminator could not be used. */
export type Failure =
  | {
    readonly _tag: "FrameTooLong"
    readonly limit: number
    /** The terminator of the frame, as `Terminator.format` renders it (none for a decoder's message). */
    readonly terminator: string | undefined
    readonly message: string
  }
  | { readonly _tag: "InvalidTerminator"; readonly message: string }

/**
 * What a framer hands its frames to: an object with methods rather than closures, as a connection holds one
 * (a cutter) for as long as it is open.
 */
export interface Receiver {
  /**
   * Receives each frame. `terminated` is false for bytes passed on under `none` and for the unterminated
   * remainder at end of input. Return `false` to stop cutting (the receiver keeps its own reason).
   */
  onFrame(bytes: Uint8Array, terminated: boolean): boolean
  /**
   * Optional: receives as one array, in order, the frames of a chunk that holds many (all but its first few,
   * which go to `onFrame`). Only for a receiver whose `onFrame` never stops cutting nor changes the terminator:
   * the frames in the array are cut without asking it.
   */
  readonly onFrames?: ((frames: Array<Framing.Frame>) => void) | undefined
}

const EMPTY = Buffer.alloc(0)

/** How many empty `length(0)` frames in a row, with no byte consumed, mean the chooser never advances. */
const MAX_EMPTY_RUN = 1024

/**
 * Frames of one chunk given to `onFrame` before the rest go to `onFrames`. An array per chunk pays for itself
 * only over hundreds of frames: measured a small loss at 128 frames per chunk, a gain at 2,048.
 */
const SINGLE_FRAMES = 256

/**
 * Makes a frame: a plain object (prototype `Object.prototype`, like `{ bytes, terminated }`) made by `new`.
 * Why not the literal: a literal has a V8 allocation site, and when a batch of frames is still alive at a
 * scavenge, V8 may decide, for good, that the site's objects live long and allocate them in the old
 * generation from then on; every later frame then costs a promotion, and the pipeline loses a third or more
 * of its throughput. Seen in about one bench process in three; never with `new`, which has no such site.
 */
export const Frame = function(
  this: { bytes: Uint8Array; terminated: boolean },
  bytes: Uint8Array,
  terminated: boolean
) {
  this.bytes = bytes
  this.terminated = terminated
} as unknown as new(bytes: Uint8Array, terminated: boolean) => Framing.Frame
Frame.prototype = Object.prototype

/** Delimiters up to this long are found by their first byte; longer ones by Node's needle search. */
const SHORT_DELIMITER = 8

/**
 * Where `delim` next occurs in `buf` from `pos`, or -1. A short delimiter is found by its first byte (Node's
 * memchr path) and checked byte by byte: Node's needle search sets up a searcher on every call, which costs more
 * than the search itself on the short lines of a request protocol (measured: 10% of a RESP server's time).
 */
const find = (buf: Buffer, delim: Uint8Array, pos: number): number => {
  const dl = delim.length
  if (dl > SHORT_DELIMITER) return buf.indexOf(delim, pos)
  const first = delim[0]
  const last = buf.length - dl
  let k = buf.indexOf(first, pos)
  while (k >= 0 && k <= last) {
    let i = 1
    while (i < dl && buf[k + i] === delim[i]) i++
    if (i === dl) return k
    k = buf.indexOf(first, k + 1)
  }
  return -1
}

export const asBuffer = (chunk: Uint8Array): Buffer =>
  Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)

export class Framer {
  /** The terminator for the current frame; `onFrame` may replace it to switch mode mid-stream. */
  terminator: Terminator.Terminator
  /** Set by the owner when a chooser failed while `onFrame` ran; returned from `push` as is. */
  failure: Failure | undefined = undefined
  /**
   * When `onFrame` returned false without a failure (a pause: asynchat's one frame at a time), the input
   * not cut yet, possibly empty: what is pushed meanwhile joins it, and `resume` cuts it, after any terminator
   * change, to go on.
   */
  private rest: Uint8Array | undefined = undefined
  private acc: Buffer = EMPTY
  private accLen = 0
  private scratch: Buffer = EMPTY
  private emptyRun = 0
  /** Frames cut so far: a connection's frame timeout restarts when one completes. */
  completed = 0
  /** Set by `many`: the index of the delimiter after the frames it handed over, or -1. */
  private found = -1

  /** The longest frame: set anew with each terminator by a machine that bounds each frame on its own. */
  maxFrameLength: number
  private readonly receiver: Receiver
  /** Whether the receiver takes a chunk's many frames as one array (`onFrames`). */
  private readonly batches: boolean

  constructor(terminator: Terminator.Terminator, maxFrameLength: number, receiver: Receiver) {
    this.terminator = terminator
    this.maxFrameLength = maxFrameLength
    this.receiver = receiver
    this.batches = receiver.onFrames !== undefined
  }

  /** Bytes of the current frame received so far. */
  get buffered(): number {
    return this.accLen
  }

  /** Drops the bytes of the current frame and of the input not cut yet (asynchat's `discard_buffers`, input side). */
  discard(): void {
    this.acc = EMPTY
    this.accLen = 0
    if (this.rest !== undefined) this.rest = EMPTY
  }

  /** Bytes waiting uncut while paused. */
  get pendingBytes(): number {
    return this.rest === undefined ? 0 : this.rest.length
  }

  /** True while paused after a frame: input waits uncut until `resume`. */
  get paused(): boolean {
    return this.rest !== undefined
  }

  /** Goes on after a pause: cuts the input that waited, with the terminator now set. */
  resume(): Failure | undefined {
    const rest = this.rest
    if (rest === undefined) return undefined
    this.rest = undefined
    return this.push(rest)
  }

  /**
   * Cuts `chunk` with the current terminator, calling `onFrame` for every frame it completes. Returns the
   * failure that ended framing, if any; after a failure the framer must not be used again. While paused,
   * `chunk` waits uncut with the rest.
   */
  push(chunk: Uint8Array): Failure | undefined {
    if (this.rest !== undefined) {
      this.rest = Buffer.concat([this.rest, chunk])
      return undefined
    }
    const buf = asBuffer(chunk)
    const len = buf.length
    let pos = 0
    for (;;) {
      const t = this.terminator
      if (t._tag === "None") {
        if (this.accLen > 0 && !this.emit(this.take(this.accLen), false)) return this.stopped(buf, pos)
        if (pos < len && !this.emit(pos === 0 ? buf : buf.subarray(pos), false)) return this.stopped(buf, len)
        return undefined
      }
      if (t._tag === "Length") {
        const n = t.length
        if (n > this.maxFrameLength) return tooLong(this.maxFrameLength, `a length of ${n}`, t)
        if (n === 0) {
          if (++this.emptyRun > MAX_EMPTY_RUN) return stalled()
          if (!this.emit(EMPTY, true)) return this.stopped(buf, pos)
          continue
        }
        const need = n - this.accLen
        const avail = len - pos
        if (avail < need) {
          if (avail > 0) this.append(buf, pos, len, n)
          return undefined
        }
        this.emptyRun = 0
        let frame: Uint8Array
        if (this.accLen === 0) {
          frame = buf.subarray(pos, pos + n)
        } else {
          this.append(buf, pos, pos + need, n)
          frame = this.take(n)
        }
        pos += need
        if (!this.emit(frame, true)) return this.stopped(buf, pos)
        continue
      }
      const delim = t.bytes
      const dl = delim.length
      // a one-byte delimiter is searched as a number, straight to memchr; see `find` for longer ones
      const byte = dl === 1 ? delim[0] : -1
      const max = this.maxFrameLength
      if (this.accLen > 0) {
        // The delimiter may start in the buffered tail and end in this chunk.
        if (dl > 1 && pos < len) {
          const w = Math.min(this.accLen, dl - 1)
          const c = Math.min(len - pos, dl - 1)
          const j = this.searchBoundary(delim, w, buf, pos, c)
          if (j >= 0) {
            const frameLen = this.accLen - w + j
            if (frameLen > max) return tooLong(max, `a frame of ${byteCount(frameLen)}`, t)
            pos += j + dl - w
            this.emptyRun = 0
            if (!this.emit(this.take(frameLen), true)) return this.stopped(buf, pos)
            continue
          }
        }
        const k = byte >= 0 ? buf.indexOf(byte, pos) : find(buf, delim, pos)
        if (k < 0) {
          if (this.accLen + len - pos >= max + dl) return tooLong(max, atLeast(this.accLen + len - pos, dl), t)
          this.append(buf, pos, len, 0)
          return undefined
        }
        const frameLen = this.accLen + k - pos
        if (frameLen > max) return tooLong(max, `a frame of ${byteCount(frameLen)}`, t)
        this.append(buf, pos, k, frameLen)
        pos = k + dl
        this.emptyRun = 0
        if (!this.emit(this.take(frameLen), true)) return this.stopped(buf, pos)
        continue
      }
      // Fast path: nothing buffered, every frame in this chunk is a view.
      let k = byte >= 0 ? buf.indexOf(byte, pos) : find(buf, delim, pos)
      if (k >= 0) this.emptyRun = 0
      const receiver = this.receiver
      const batches = this.batches
      const first = pos
      let single = 0
      while (k >= 0) {
        if (k - pos > max) return tooLong(max, `a frame of ${byteCount(k - pos)}`, t)
        if (batches && ++single > SINGLE_FRAMES) {
          pos = this.many(buf, pos, k, delim, byte, (pos - first) / SINGLE_FRAMES)
          k = this.found
          continue
        }
        const frame = buf.subarray(pos, k)
        pos = k + dl
        this.completed++
        if (!receiver.onFrame(frame, true)) return this.stopped(buf, pos)
        // the machine chose another terminator, or another limit, for the next frame
        if (this.terminator !== t || this.maxFrameLength !== max) break
        k = byte >= 0 ? buf.indexOf(byte, pos) : find(buf, delim, pos)
      }
      if (k >= 0) continue
      if (len - pos >= max + dl) return tooLong(max, atLeast(len - pos, dl), t)
      if (pos < len) this.append(buf, pos, len, 0)
      return undefined
    }
  }

  /**
   * Gives the receiver's `onFrames` the frames of `buf` from `[pos, k)` on, up to the last delimiter or an
   * over-long frame; returns where the next frame starts, and leaves the delimiter after it (or -1) in `found`.
   *
   * One array per chunk, sized up front from `perFrame` (bytes per frame so far; under-estimated, so that it
   * seldom needs trimming): no callback per frame and no growth by push. Some 10% of a whole pipeline on
   * 64 KiB chunks of short lines. A method apart from `push`: written inside it, the loop slowed `push`'s
   * frame-by-frame path, small chunks, by 5-10% once it had run.
   */
  private many(
    buf: Buffer,
    pos: number,
    k: number,
    delim: Uint8Array,
    byte: number,
    perFrame: number
  ): number {
    const max = this.maxFrameLength
    const dl = delim.length
    // oxlint-disable-next-line unicorn/no-new-array -- a length on purpose: the array is filled by index
    const frames: Array<Framing.Frame> = new Array(Math.min(((0.75 * (buf.length - pos)) / perFrame) | 0, 4096))
    let n = 0
    do {
      frames[n++] = new Frame(buf.subarray(pos, k), true)
      pos = k + dl
      k = byte >= 0 ? buf.indexOf(byte, pos) : find(buf, delim, pos)
    } while (k >= 0 && k - pos <= max)
    if (n < frames.length) frames.length = n
    this.completed += n
    this.receiver.onFrames!(frames)
    this.found = k
    return pos
  }

  /** End of input: the unterminated remainder, if any, becomes a final frame with `terminated` false. */
  end(): Failure | undefined {
    if (this.accLen === 0) return undefined
    const max = this.maxFrameLength
    if (this.accLen > max) return tooLong(max, `a frame of ${byteCount(this.accLen)}`, this.terminator)
    return this.emit(this.take(this.accLen), false) ? undefined : this.failure
  }

  /** `onFrame` said stop: a failure ends framing; otherwise keep what is left of `buf` for the next push. */
  private stopped(buf: Buffer, pos: number): Failure | undefined {
    if (this.failure === undefined) this.rest = buf.subarray(pos)
    return this.failure
  }

  private emit(frame: Uint8Array, terminated: boolean): boolean {
    this.completed++
    return this.receiver.onFrame(frame, terminated)
  }

  /** Finds `delim` in the last `w` buffered bytes followed by `buf[pos, pos + c)`; -1 when absent. */
  private searchBoundary(delim: Buffer, w: number, buf: Buffer, pos: number, c: number): number {
    const size = w + c
    if (this.scratch.length < size) this.scratch = Buffer.allocUnsafe(Math.max(size, 16))
    const s = this.scratch
    this.acc.copy(s, 0, this.accLen - w, this.accLen)
    buf.copy(s, w, pos, pos + c)
    // Bytes past `size` are stale; a match that reaches into them is no match.
    const j = s.indexOf(delim)
    return j >= 0 && j + delim.length <= size ? j : -1
  }

  /** Appends `src[from, to)` to the current frame; `expected` (when known) sizes the buffer exactly. */
  private append(src: Buffer, from: number, to: number, expected: number): void {
    const n = to - from
    if (n === 0) return
    const needed = this.accLen + n
    if (needed > this.acc.length) {
      const grown = Math.max(needed, expected, Math.min(this.acc.length * 2, this.capacityLimit()), 64)
      const next = Buffer.allocUnsafe(grown)
      this.acc.copy(next, 0, 0, this.accLen)
      this.acc = next
    }
    src.copy(this.acc, this.accLen, from, to)
    this.accLen = needed
  }

  private capacityLimit(): number {
    const t = this.terminator
    const slack = t._tag === "Delimiter" ? t.bytes.length - 1 : 0
    return Number.isFinite(this.maxFrameLength) ? this.maxFrameLength + slack : Number.MAX_SAFE_INTEGER
  }

  /** Hands out `acc[0, n)` and resets the current frame. A mostly-full buffer is given away, else copied. */
  private take(n: number): Uint8Array {
    const acc = this.acc
    this.accLen = 0
    if (n === 0) return EMPTY
    if (n * 2 >= acc.length) {
      this.acc = EMPTY
      return acc.subarray(0, n)
    }
    return Uint8Array.prototype.slice.call(acc, 0, n)
  }
}

/** A frame (or, with no terminator, a decoder's message) over `limit`, `what` saying how long. */
export const tooLong = (limit: number, what: string, terminator: Terminator.Terminator | undefined): Failure => {
  const formatted = terminator === undefined ? undefined : Terminator.format(terminator)
  return {
    _tag: "FrameTooLong",
    limit,
    terminator: formatted,
    message: formatted === undefined
      ? `Message too long: ${what} exceeds the limit of ${byteCount(limit)}`
      : `Frame too long: ${what} exceeds the limit of ${byteCount(limit)} (terminator ${formatted})`
  }
}

/** "1 byte", "2 bytes". */
export const byteCount = (n: number): string => (n === 1 ? "1 byte" : `${n} bytes`)

/** With `buffered` bytes and no delimiter among them, the frame is at least this long. */
const atLeast = (buffered: number, delimiterLength: number): string =>
  `a frame of at least ${byteCount(buffered - delimiterLength + 1)}`

const stalled = (): Failure => ({
  _tag: "InvalidTerminator",
  message: `length(0) was chosen ${MAX_EMPTY_RUN} times in a row without consuming input: framing never advances`
})

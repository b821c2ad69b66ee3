/**
 * An in-memory, one-direction byte pipe with TCP's observable behaviour: bytes arrive in order, cut into
 * pieces by a chosen policy, each piece readable `delay` after it was written (on the Effect clock, so
 * `TestClock` drives it); writes wait while `capacity` bytes are in flight (a peer that does not read
 * stops its writer); `end` is a FIN (read after the last byte), `reset` an RST (a read or write fails).
 */
import { Clock, Effect } from "effect"
import type * as Arr from "effect/Array"

/** How written bytes are cut into the pieces a reader receives. */
export type Split = (data: Uint8Array) => ReadonlyArray<Uint8Array>

interface Piece {
  readonly bytes: Uint8Array
  readonly at: number
}

/** Why a pipe stopped: the writer's FIN, or a reset. */
export type Outcome = "end" | "reset"

export class Pipe {
  private readonly pieces: Array<Piece> = []
  private inFlight = 0
  private outcome: Outcome | undefined = undefined
  private readerWake: (() => void) | undefined = undefined
  private readonly writerWakes: Array<() => void> = []
  readonly capacity: number
  readonly delayMillis: number
  private readonly split: Split

  constructor(options: { readonly capacity: number; readonly delayMillis: number; readonly split: Split }) {
    this.capacity = options.capacity
    this.delayMillis = options.delayMillis
    this.split = options.split
  }

  /** Writes `data`; fails with "reset" once the pipe was reset; waits while the pipe is at capacity. */
  write(data: Uint8Array): Effect.Effect<void, Outcome> {
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (this.outcome !== undefined) return Effect.fail(this.outcome)
      if (data.length === 0) return Effect.void
      for (const bytes of this.split(Uint8Array.prototype.slice.call(data))) {
        if (bytes.length > 0) this.pieces.push({ bytes, at: now + this.delayMillis })
      }
      this.inFlight += data.length
      this.wakeReader()
      return this.inFlight >= this.capacity ? this.awaitCapacity : Effect.void
    })
  }

  /** Reads every piece that is due, at least one; fails with the outcome once nothing is left. */
  get read(): Effect.Effect<Arr.NonEmptyReadonlyArray<Uint8Array>, Outcome> {
    const attempt: Effect.Effect<Arr.NonEmptyReadonlyArray<Uint8Array>, Outcome> = Effect.flatMap(
      Clock.currentTimeMillis,
      (now) => {
        if (this.outcome === "reset") return Effect.fail("reset" as const)
        if (this.pieces.length > 0) {
          const first = this.pieces[0]
          if (first.at > now) return Effect.andThen(Effect.sleep(first.at - now), attempt)
          const out: Array<Uint8Array> = []
          let size = 0
          while (this.pieces.length > 0 && this.pieces[0].at <= now) {
            const piece = this.pieces.shift()!
            out.push(piece.bytes)
            size += piece.bytes.length
          }
          this.inFlight -= size
          this.wakeWriters()
          return Effect.succeed(out as unknown as Arr.NonEmptyReadonlyArray<Uint8Array>)
        }
        if (this.outcome === "end") return Effect.fail("end" as const)
        return Effect.andThen(this.awaitData, attempt)
      }
    )
    return attempt
  }

  /** The writer is done: the reader sees the end after the last byte. */
  end(): void {
    if (this.outcome !== undefined) return
    this.outcome = "end"
    this.wakeReader()
  }

  /** Tears the pipe down: pending bytes are lost, readers and writers fail. */
  reset(): void {
    if (this.outcome === "reset") return
    this.outcome = "reset"
    this.pieces.length = 0
    this.inFlight = 0
    this.wakeReader()
    this.wakeWriters()
  }

  private get awaitData(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.pieces.length > 0 || this.outcome !== undefined) return resume(Effect.void)
      this.readerWake = () => resume(Effect.void)
      return Effect.sync(() => {
        this.readerWake = undefined
      })
    })
  }

  private get awaitCapacity(): Effect.Effect<void, Outcome> {
    return Effect.callback<void, Outcome>((resume) => {
      const check = () => {
        if (this.outcome === "reset") resume(Effect.fail("reset"))
        else if (this.inFlight < this.capacity) resume(Effect.void)
        else return false
        return true
      }
      if (check()) return
      const waiter = () => {
        if (!check()) this.writerWakes.push(waiter)
      }
      this.writerWakes.push(waiter)
      return Effect.sync(() => {
        const i = this.writerWakes.indexOf(waiter)
        if (i >= 0) this.writerWakes.splice(i, 1)
      })
    })
  }

  private wakeReader(): void {
    const wake = this.readerWake
    this.readerWake = undefined
    wake?.()
  }

  private wakeWriters(): void {
    const wakes = this.writerWakes.splice(0)
    for (const wake of wakes) wake()
  }
}

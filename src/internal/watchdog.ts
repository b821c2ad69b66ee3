/**
 * The timeouts of many connections, watched by one fiber: a server's connections share one watchdog, so an
 * idle connection with timeouts holds a heap slot rather than a fiber of its own.
 *
 * The heap holds each watched connection once, keyed by when it is to be looked at next. A connection's
 * deadlines move with every read, but the heap is not told: when its time comes the connection looks at its
 * real deadlines, fails a wait that is over one, and says when to look next (Netty's `HashedWheelTimer` idea
 * of re-arming only when a timer fires, with exact deadlines instead of ticks). Only a deadline that comes
 * earlier than the one armed (a frame starting) re-arms it at once. The fiber sleeps on the Effect clock, so
 * `TestClock` drives it.
 */
import { type Clock, Effect } from "effect"

/** What a watchdog watches: its two fields are the watchdog's own. */
export interface Watched {
  /** When the watchdog looks at it next; Infinity when it is not armed. */
  watchAt: number
  /** Its place in the watchdog's heap, or -1. */
  watchIndex: number
  /** Looks at the deadlines at `now`, failing a wait that is over one, and says when to look next. */
  check(now: number): number
}

export class Watchdog {
  readonly clock: Clock.Clock
  private readonly heap: Array<Watched> = []
  /** When the fiber wakes by itself. */
  private sleepingUntil = Infinity
  private wake: (() => void) | undefined = undefined

  constructor(clock: Clock.Clock) {
    this.clock = clock
  }

  /** How many are watched. */
  get size(): number {
    return this.heap.length
  }

  /** Looks at `watched` at `at` (Infinity: not at all), wherever it was armed before. */
  arm(watched: Watched, at: number): void {
    if (at === Infinity) return this.disarm(watched)
    watched.watchAt = at
    if (watched.watchIndex < 0) {
      watched.watchIndex = this.heap.length
      this.heap.push(watched)
    }
    this.siftUp(watched.watchIndex)
    this.siftDown(watched.watchIndex)
    if (at < this.sleepingUntil) this.wakeUp()
  }

  /** Stops watching `watched`. */
  disarm(watched: Watched): void {
    const i = watched.watchIndex
    watched.watchAt = Infinity
    if (i < 0) return
    watched.watchIndex = -1
    const last = this.heap.pop()!
    if (i === this.heap.length) return
    this.heap[i] = last
    last.watchIndex = i
    this.siftUp(i)
    this.siftDown(last.watchIndex)
  }

  /** The fiber: looks at what is due, then sleeps until the next one is, or until an earlier one is armed. */
  readonly run: Effect.Effect<never> = Effect.suspend(() => {
    const now = this.clock.currentTimeMillisUnsafe()
    while (this.heap.length > 0 && this.heap[0].watchAt <= now) {
      const due = this.heap[0]
      let next: number
      try {
        next = due.check(now)
      } catch {
        // one connection's failure must not stop the watching of all the others: it is watched no more
        next = Infinity
      }
      // never due again at once, whatever it says (a zero timeout): the loop must end
      this.arm(due, next > now ? next : now + 1)
    }
    this.sleepingUntil = this.heap.length > 0 ? this.heap[0].watchAt : Infinity
    return Effect.andThen(this.sleep(this.sleepingUntil - now), this.run)
  })

  private sleep(millis: number): Effect.Effect<void> {
    const woken = Effect.callback<void>((resume) => {
      this.wake = () => resume(Effect.void)
      return Effect.sync(() => {
        this.wake = undefined
      })
    })
    // a sleep cut short when an earlier deadline is armed: not a timeout with a fallback
    // @effect-diagnostics-next-line raceFirstWithSleepToTimeout:off
    return millis === Infinity ? woken : Effect.raceFirst(Effect.sleep(millis), woken)
  }

  private wakeUp(): void {
    const wake = this.wake
    if (wake === undefined) return
    this.wake = undefined
    this.sleepingUntil = -Infinity // it is awake: no need to wake it again before it sleeps
    wake()
  }

  private siftUp(i: number): void {
    const heap = this.heap
    const item = heap[i]
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (heap[parent].watchAt <= item.watchAt) break
      heap[i] = heap[parent]
      heap[i].watchIndex = i
      i = parent
    }
    heap[i] = item
    item.watchIndex = i
  }

  private siftDown(i: number): void {
    const heap = this.heap
    const n = heap.length
    const item = heap[i]
    for (;;) {
      const left = 2 * i + 1
      if (left >= n) break
      const right = left + 1
      const child = right < n && heap[right].watchAt < heap[left].watchAt ? right : left
      if (heap[child].watchAt >= item.watchAt) break
      heap[i] = heap[child]
      heap[i].watchIndex = i
      i = child
    }
    heap[i] = item
    item.watchIndex = i
  }
}

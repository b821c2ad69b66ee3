/**
 * Reads with idle and frame timeouts that cost nothing per read.
 *
 * `Effect.timeoutOrElse` around every socket read costs a forked race and a timer each time (a few µs: more
 * than the rest of a request). Instead, one pump fiber performs the reads, only when the consumer asks (so
 * nothing is read ahead of the handler), and one watchdog fiber sleeps until the next deadline: the idle
 * deadline (`idle` after the last bytes arrived) or the frame deadline (`frame` after the current frame's
 * first bytes). When a deadline passes while the consumer waits, the watchdog fails that wait with the
 * timeout's error. Both run on the Effect clock, so `TestClock` drives them.
 */
import { Clock, Effect, Exit, type Scope } from "effect"

type Resume<A, E> = (effect: Effect.Effect<A, E>) => void

/** @internal */
export class Inbox<A, E> {
  private held: Exit.Exit<A, E> | undefined = undefined
  private consumer: Resume<A, E> | undefined = undefined
  private demanded = false
  private pumpWake: (() => void) | undefined = undefined
  private watchdogWake: (() => void) | undefined = undefined
  private lastDataAt = 0
  private frameStartedAt = -1
  /** The frame deadline passed while the handler was busy: its next wait fails at once. */
  private frameOverdue = false
  private readonly read: Effect.Effect<A, E>
  private readonly idleMillis: number
  private readonly frameMillis: number
  private readonly idleError: () => E
  private readonly frameError: () => E

  constructor(options: {
    readonly read: Effect.Effect<A, E>
    readonly idleMillis: number | undefined
    readonly frameMillis: number | undefined
    readonly idleError: () => E
    readonly frameError: () => E
  }) {
    this.read = options.read
    this.idleMillis = options.idleMillis ?? Infinity
    this.frameMillis = options.frameMillis ?? Infinity
    this.idleError = options.idleError
    this.frameError = options.frameError
  }

  /** The next read, as the consumer sees it: what the pump read, or a timeout. */
  readonly next: Effect.Effect<A, E> = Effect.callback<A, E>((resume) => {
    if (this.frameOverdue) return resume(Effect.fail(this.frameError()))
    const held = this.held
    if (held !== undefined) {
      this.held = undefined
      return resume(held)
    }
    this.consumer = resume
    this.demanded = true
    this.wakePump()
    return Effect.sync(() => {
      if (this.consumer === resume) this.consumer = undefined
    })
  })

  /**
   * Tells the watchdog whether a frame is in progress after the bytes just handed over: its deadline runs
   * from the read that started it.
   */
  frameInProgress(inProgress: boolean): void {
    if (!inProgress) {
      this.frameStartedAt = -1
    } else if (this.frameStartedAt < 0) {
      this.frameStartedAt = this.lastDataAt
      if (this.frameMillis < this.idleMillis) this.wakeWatchdog()
    }
  }

  /** Starts the pump and the watchdog in `scope`. */
  start(scope: Scope.Scope): Effect.Effect<void> {
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      this.lastDataAt = now
      return Effect.andThen(
        Effect.forkIn(this.pump, scope, { startImmediately: true }),
        Effect.forkIn(this.watchdog, scope, { startImmediately: true })
      )
    })
  }

  /**
   * Reads, hands each read to the waiting consumer (or holds it), and reads again at once while the consumer
   * keeps up: one read ahead at most, and a consumer that keeps up finds its next read already under way. Once a
   * read is held, the pump waits for the consumer to ask before reading more.
   */
  private get pump(): Effect.Effect<void> {
    const awaitDemand = Effect.callback<void>((resume) => {
      if (this.demanded || this.held === undefined) return resume(Effect.void)
      this.pumpWake = () => resume(Effect.void)
    })
    const loop: Effect.Effect<void> = Effect.flatMap(
      Effect.exit(this.read),
      (exit) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          this.lastDataAt = now
          const consumer = this.consumer
          if (consumer !== undefined) {
            this.consumer = undefined
            consumer(exit)
          } else {
            this.held = exit
          }
          // after the end of input or a failure there is nothing more to read
          if (!(Exit.isSuccess(exit) && exit.value !== undefined)) return Effect.void
          this.demanded = false
          return Effect.andThen(awaitDemand, loop)
        })
    )
    return Effect.andThen(awaitDemand, loop)
  }

  private get watchdog(): Effect.Effect<void> {
    // a sleep cut short when a frame starts and brings its deadline forward: not a timeout with a fallback
    const sleepUntil = (millis: number) =>
      // @effect-diagnostics-next-line raceFirstWithSleepToTimeout:off
      Effect.raceFirst(
        Effect.sleep(millis),
        Effect.callback<void>((resume) => {
          this.watchdogWake = () => resume(Effect.void)
          return Effect.sync(() => {
            this.watchdogWake = undefined
          })
        })
      )
    const loop: Effect.Effect<void> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const idleAt = this.lastDataAt + this.idleMillis
      const frameAt = this.frameStartedAt < 0 ? Infinity : this.frameStartedAt + this.frameMillis
      const consumer = this.consumer
      if (consumer !== undefined && (now >= idleAt || now >= frameAt)) {
        this.consumer = undefined
        consumer(Effect.fail(now >= frameAt ? this.frameError() : this.idleError()))
        return Effect.void
      }
      if (now >= frameAt) {
        this.frameOverdue = true
        return Effect.void
      }
      // the idle deadline passed while the handler was busy: the time it spent is not the peer's idleness
      if (now >= idleAt) this.lastDataAt = now
      const next = Math.min(this.lastDataAt + this.idleMillis, frameAt)
      return next === Infinity
        ? Effect.andThen(sleepUntil(Infinity), loop)
        : Effect.andThen(sleepUntil(next - now), loop)
    })
    return loop
  }

  private wakePump(): void {
    const wake = this.pumpWake
    this.pumpWake = undefined
    wake?.()
  }

  private wakeWatchdog(): void {
    const wake = this.watchdogWake
    this.watchdogWake = undefined
    wake?.()
  }
}

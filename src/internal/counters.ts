/**
 * The traffic metrics (`bytesIn`, `framesIn`, `bytesOut`), added up in plain numbers and reported once per
 * scheduler turn. A metric update looks its series up in the context every time; three per read cost more than
 * the rest of a small request's framing, so a server's connections share one `Counters` and a busy server
 * updates each metric once per turn, however many reads that turn held. Counts reach the metrics by the end of
 * the turn they happened in.
 */
import type { Context, Scheduler } from "effect"
import * as ChatMetrics from "../ChatMetrics.ts"

export class Counters {
  private bytesIn = 0
  private framesIn = 0
  private bytesOut = 0
  private scheduled = false
  private readonly context: Context.Context<never>
  /** Where a server's connections schedule their tasks: all of them run in one turn, on one timer. */
  readonly dispatcher: Scheduler.SchedulerDispatcher

  constructor(context: Context.Context<never>, dispatcher: Scheduler.SchedulerDispatcher) {
    this.context = context
    this.dispatcher = dispatcher
  }

  read(bytes: number): void {
    this.bytesIn += bytes
    this.schedule()
  }

  frames(count: number): void {
    this.framesIn += count
    this.schedule()
  }

  written(bytes: number): void {
    this.bytesOut += bytes
    this.schedule()
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    this.dispatcher.scheduleTask(this.flush, 0)
  }

  /** Reports what was added up since the last flush. */
  readonly flush = (): void => {
    this.scheduled = false
    if (this.bytesIn > 0) ChatMetrics.bytesIn.updateUnsafe(this.bytesIn, this.context)
    if (this.framesIn > 0) ChatMetrics.framesIn.updateUnsafe(this.framesIn, this.context)
    if (this.bytesOut > 0) ChatMetrics.bytesOut.updateUnsafe(this.bytesOut, this.context)
    this.bytesIn = 0
    this.framesIn = 0
    this.bytesOut = 0
  }
}

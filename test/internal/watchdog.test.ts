/**
 * The shared watchdog and the inbox's timeouts, driven by TestClock: deadlines fire in order at their exact
 * time, whatever the order of arming, re-arming and disarming, and nothing closed stays watched.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, Fiber } from "effect"
import * as Socket from "effect/socket/Socket"
import { TestClock } from "effect/testing"
import * as ChatError from "../../src/ChatError.ts"
import * as Connection from "../../src/internal/connection.ts"
import { Inbox } from "../../src/internal/inbox.ts"
import { settingsOf } from "../../src/internal/settings.ts"
import { Watchdog, type Watched } from "../../src/internal/watchdog.ts"
import * as Listener from "../../src/Listener.ts"
import * as Terminator from "../../src/Terminator.ts"

/** A consumer that takes the reads as they are. */
const asIs = { onRead: Effect.succeed, holdOutput: () => {}, releaseOutput: () => {} }

const idle = () => new ChatError.ChatError({ reason: new ChatError.IdleTimeout({ timeout: Duration.minutes(1) }) })

/** A watchdog on the test clock, its fiber running in the test's scope. */
const watchdog = Effect.gen(function*() {
  const watchdog = new Watchdog(yield* Clock.Clock)
  yield* Effect.forkScoped(watchdog.run)
  return watchdog
})

/** Records when it was looked at; wants no second look. */
class Probe implements Watched {
  watchAt = Infinity
  watchIndex = -1
  readonly seen: Array<number> = []
  readonly id: number
  readonly log: Array<number>
  constructor(id: number, log: Array<number>) {
    this.id = id
    this.log = log
  }
  check(now: number): number {
    this.seen.push(now)
    this.log.push(this.id)
    return Infinity
  }
}

/** A small deterministic generator, so a failure can be replayed. */
const random = (seed: number) => () => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}

describe("Watchdog", () => {
  it.effect("looks at each armed one once, at its last armed time, in order, after any mix of arm and disarm", () =>
    Effect.gen(function*() {
      const dog = yield* watchdog
      const next = random(42)
      const log: Array<number> = []
      const probes = Array.from({ length: 300 }, (_, i) => new Probe(i, log))
      const due = new Map<number, number>()
      for (const probe of probes) {
        const at = 1 + Math.floor(next() * 10_000)
        dog.arm(probe, at)
        due.set(probe.id, at)
      }
      for (const probe of probes) {
        const roll = next()
        if (roll < 0.3) {
          const at = 1 + Math.floor(next() * 10_000) // earlier or later than before
          dog.arm(probe, at)
          due.set(probe.id, at)
        } else if (roll < 0.5) {
          dog.disarm(probe)
          due.delete(probe.id)
        }
      }
      expect(dog.size).toBe(due.size)
      yield* TestClock.adjust(10_001)
      for (const probe of probes) expect(probe.seen).toEqual(due.has(probe.id) ? [due.get(probe.id)] : [])
      const times = log.map((id) => due.get(id)!)
      expect(times).toEqual(times.toSorted((a, b) => a - b))
      expect(dog.size).toBe(0)
    }))

  it.effect("wakes early for a deadline armed before the one it sleeps until", () =>
    Effect.gen(function*() {
      const dog = yield* watchdog
      const log: Array<number> = []
      const late = new Probe(1, log)
      const early = new Probe(2, log)
      dog.arm(late, 1_000)
      yield* TestClock.adjust(10) // asleep until 1,000
      dog.arm(early, 100)
      yield* TestClock.adjust(90)
      expect(early.seen).toEqual([100])
      expect(late.seen).toEqual([])
    }))
})

describe("Inbox timeouts on a shared watchdog", () => {
  // Regression: the inbox armed the watchdog when it was made, before its transport opened; when opening
  // failed, no finalizer existed to disarm it, and it stayed in the server's heap for good.
  it.effect("a connection whose transport fails to open leaves nothing watched", () =>
    Effect.gen(function*() {
      const dog = yield* watchdog
      const failing = Socket.make({
        reader: Effect.fail(
          new Socket.SocketError({ reason: new Socket.SocketOpenError({ kind: "Unknown", cause: new Error("no") }) })
        ),
        writer: Effect.die("unused")
      })
      const exit = yield* Effect.exit(Effect.scoped(Connection.open({
        link: Listener.fromSocket(failing, {
          localAddress: { _tag: "Pipe", name: "x" },
          remoteAddress: { _tag: "Pipe", name: "x" }
        }),
        id: 1,
        settings: settingsOf({}),
        mode: { _tag: "Fixed", terminator: Terminator.lf },
        openError: idle,
        watchdog: dog
      })))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(dog.size).toBe(0)
    }))

  // Regression: a reader failed by the watchdog runs at once; one that closed its connection there was armed
  // again by the watchdog's loop, and kept for another period.
  it.effect("a connection closed by the reader its timeout woke is watched no more", () =>
    Effect.gen(function*() {
      const dog = yield* watchdog
      const dispatcher = yield* Effect.withFiber((fiber) => Effect.succeed(fiber.currentDispatcher))
      const inbox = new Inbox({ transport: { pause: () => {}, resume: () => {} }, reader: asIs }, {
        watchdog: dog,
        dispatcher,
        idleMillis: 60_000,
        frameMillis: undefined,
        idleError: idle,
        frameError: idle
      })
      inbox.watch()
      expect(dog.size).toBe(1)
      // what a connection's finalizer does when its handler ends on the timeout
      const close = Effect.sync(() => {
        inbox.stop()
        inbox.fail(idle())
      })
      const reader = yield* Effect.forkScoped(Effect.catch(inbox.next, () => close), { startImmediately: true })
      yield* TestClock.adjust("60 seconds")
      yield* Fiber.join(reader)
      expect(dog.size).toBe(0)
    }))
})

import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import type * as Arr from "effect/Array"
import type * as ChatError from "../../src/ChatError.ts"
import { Offered, Outbox } from "../../src/internal/outbox.ts"
import { text } from "../helpers.ts"

/**
 * A transport that records each write. `pending` decides a write's answer: undefined (taken at once) or an
 * effect to wait on; `during` runs inside the write, as an in-process peer that answers at once would.
 */
const fakeTransport = (options: {
  readonly pending?: () => Effect.Effect<void, ChatError.ChatError> | undefined
  readonly during?: (batch: ReadonlyArray<Uint8Array>) => void
} = {}) => {
  const writes: Array<string> = []
  let finished = 0
  return {
    writes,
    finished: () => finished,
    transport: {
      write: (batch: Arr.NonEmptyReadonlyArray<Uint8Array>) => {
        writes.push(batch.map(text).join(""))
        options.during?.(batch)
        return options.pending?.()
      },
      finish: Effect.sync(() => {
        finished++
      })
    }
  }
}

const makeOutbox = (transport: ReturnType<typeof fakeTransport>["transport"], limits = {}) =>
  Effect.withFiber((fiber) => {
    const outcomes: Array<Exit.Exit<void, ChatError.ChatError>> = []
    const outbox = new Outbox(
      { transport, counters: { written: () => {} }, outputDone: (exit) => outcomes.push(exit) },
      { highWaterMark: 1024, lowWaterMark: 512, outputLimit: 4096, ...limits },
      fiber.context,
      fiber.currentDispatcher
    )
    return Effect.succeed({ outbox, outcomes })
  })

/** Lets the scheduler run what was scheduled: the outbox writes on the next turn. */
const turns = Effect.forEach(Array.from({ length: 20 }), () => Effect.yieldNow, { discard: true })

describe("Outbox", () => {
  it.effect("what is pushed in one turn goes to a transport that takes it at once in one write, in order", () =>
    Effect.gen(function*() {
      const fake = fakeTransport()
      const { outbox } = yield* makeOutbox(fake.transport)
      yield* outbox.push(["a", "b"])
      yield* outbox.push([new TextEncoder().encode("c")])
      expect(fake.writes).toEqual([])
      yield* turns
      expect(fake.writes).toEqual(["abc"])
    }))

  it.effect("while a write waits for the transport, later pushes queue and go out in one write after it", () =>
    Effect.gen(function*() {
      const room = yield* Deferred.make<void, ChatError.ChatError>()
      let first = true
      const fake = fakeTransport({
        pending: () => {
          if (!first) return undefined
          first = false
          return Deferred.await(room)
        }
      })
      const { outbox } = yield* makeOutbox(fake.transport)
      yield* outbox.push(["1"])
      yield* turns
      yield* outbox.push(["2"])
      yield* outbox.push(["3"])
      yield* turns
      expect(fake.writes).toEqual(["1"])
      yield* Deferred.succeed(room, undefined)
      yield* turns
      expect(fake.writes).toEqual(["1", "23"])
    }))

  it.effect("a push at the high-water mark waits while the transport has no room, until the queue is written", () =>
    Effect.gen(function*() {
      const room = yield* Deferred.make<void, ChatError.ChatError>()
      const fake = fakeTransport({ pending: () => Deferred.await(room) })
      const { outbox } = yield* makeOutbox(fake.transport, { highWaterMark: 4, lowWaterMark: 2 })
      // handed to the transport, which then has no room: the next push stays queued
      yield* outbox.push(["12345"])
      yield* turns
      const pushing = yield* Effect.forkChild(outbox.push(["abcde"]), { startImmediately: true })
      yield* turns
      expect(pushing.pollUnsafe()).toBeUndefined()
      expect(fake.writes).toEqual(["12345"])
      yield* Deferred.succeed(room, undefined)
      yield* Fiber.join(pushing)
      expect(fake.writes).toEqual(["12345", "abcde"])
    }))

  it.effect("what the handler queues inside a write (a peer that answers at once) goes out after it, not inside", () =>
    Effect.gen(function*() {
      let outbox: Outbox | undefined = undefined
      let nested = 0
      const fake = fakeTransport({
        during: (batch) => {
          if (text(batch[0]) === "ping") {
            // the write has not returned: this must not start a write of its own
            outbox!.offer(["pong"])
            nested = fakeWrites().length
          }
        }
      })
      const fakeWrites = () => fake.writes
      const made = yield* makeOutbox(fake.transport)
      outbox = made.outbox
      yield* outbox.push(["ping"])
      yield* turns
      expect(nested).toBe(1)
      expect(fake.writes).toEqual(["ping", "pong"])
    }))

  it.effect("what is queued while held (a read run in the transport's callback) goes out at release, in one write", () =>
    Effect.gen(function*() {
      const fake = fakeTransport()
      const { outbox } = yield* makeOutbox(fake.transport)
      outbox.hold()
      yield* outbox.push(["a"])
      yield* outbox.push(["b"])
      yield* turns
      expect(fake.writes).toEqual([])
      outbox.release()
      expect(fake.writes).toEqual(["ab"])
      yield* turns
      expect(fake.writes).toEqual(["ab"])
    }))

  it.effect("the input side's flush writes at once, held or not, and hands back the wait for room", () =>
    Effect.gen(function*() {
      const room = yield* Deferred.make<void, ChatError.ChatError>()
      const fake = fakeTransport({ pending: () => Deferred.await(room) })
      const { outbox } = yield* makeOutbox(fake.transport)
      outbox.hold()
      yield* outbox.push(["x"])
      const pending = outbox.flush()
      expect(fake.writes).toEqual(["x"])
      expect(pending).toBeDefined()
      outbox.release()
      yield* outbox.push(["y"])
      yield* turns
      // a wake hands "y" over too, as a stream past its high-water mark still takes a write; then a writer fiber
      // waits for the room, and what is queued after waits with it
      expect(fake.writes).toEqual(["x", "y"])
      yield* outbox.push(["z"])
      yield* turns
      expect(fake.writes).toEqual(["x", "y"])
      yield* Deferred.succeed(room, undefined)
      yield* pending!
      yield* turns
      expect(fake.writes).toEqual(["x", "y", "z"])
    }))

  it.effect("closeWhenDone finishes the transport after everything queued before it, and tells the owner once", () =>
    Effect.gen(function*() {
      const fake = fakeTransport()
      const { outbox, outcomes } = yield* makeOutbox(fake.transport)
      yield* outbox.push(["last words"])
      outbox.closeWhenDone()
      yield* outbox.push(["dropped"])
      expect(outbox.offer(["dropped too"])).toBe(Offered.Closed)
      yield* Deferred.await(outbox.done)
      expect(fake.writes).toEqual(["last words"])
      yield* turns
      expect(fake.finished()).toBe(1)
      expect(outcomes.length).toBe(1)
      expect(Exit.isSuccess(outcomes[0])).toBe(true)
    }))

  it.effect("offer refuses past outputLimit without queueing, and says Full", () =>
    Effect.gen(function*() {
      const fake = fakeTransport({ pending: () => Effect.never })
      const { outbox } = yield* makeOutbox(fake.transport, { highWaterMark: 4, lowWaterMark: 2, outputLimit: 8 })
      expect(outbox.offer(["12345678"])).toBe(Offered.Queued)
      expect(outbox.offer(["9"])).toBe(Offered.Full)
      yield* turns
      expect(fake.writes).toEqual(["12345678"])
    }))
})

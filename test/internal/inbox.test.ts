import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber } from "effect"
import * as ChatError from "../../src/ChatError.ts"
import { Inbox } from "../../src/internal/inbox.ts"
import { text } from "../helpers.ts"

const idle = () => new ChatError.ChatError({ reason: new ChatError.IdleTimeout({ timeout: Duration.minutes(1) }) })

const bytes = (s: string) => new TextEncoder().encode(s)

/** An inbox over a fake transport that records pause and resume, read as text (undefined: the end). */
const makeInbox = Effect.withFiber((fiber) => {
  const flow: Array<"pause" | "resume"> = []
  let outputHeld = 0
  const inbox = new Inbox({
    transport: { pause: () => flow.push("pause"), resume: () => flow.push("resume") },
    reader: {
      onRead: (chunks) => Effect.succeed(chunks === undefined ? undefined : chunks.map(text).join("|")),
      holdOutput: () => {
        outputHeld++
      },
      releaseOutput: () => {
        outputHeld--
      }
    }
  }, {
    watchdog: undefined,
    dispatcher: fiber.currentDispatcher,
    idleMillis: undefined,
    frameMillis: undefined,
    idleError: idle,
    frameError: idle
  })
  return Effect.succeed({ inbox, flow, outputHeld: () => outputHeld })
})

describe("Inbox", () => {
  it.effect("a read that arrives while the consumer waits goes to it in the transport's callback, output held", () =>
    Effect.gen(function*() {
      const { flow, inbox, outputHeld } = yield* makeInbox
      let heldDuring = -1
      const reading = yield* Effect.forkChild(
        Effect.tap(inbox.next, () =>
          Effect.sync(() => {
            heldDuring = outputHeld()
          })),
        { startImmediately: true }
      )
      expect(flow).toEqual(["resume"])
      inbox.data(bytes("hello"))
      expect(yield* Fiber.join(reading)).toBe("hello")
      expect(heldDuring).toBe(1)
      expect(outputHeld()).toBe(0)
    }))

  it.effect("reads that arrive while the consumer is busy are held, the transport paused, and handed over together", () =>
    Effect.gen(function*() {
      const { flow, inbox } = yield* makeInbox
      expect(
        yield* Effect.forkChild(inbox.next, { startImmediately: true }).pipe(
          Effect.tap(() => Effect.sync(() => inbox.data(bytes("a")))),
          Effect.flatMap(Fiber.join)
        )
      ).toBe("a")
      // nobody waits now: the transport is paused after the first held read
      inbox.data(bytes("b"))
      inbox.data(bytes("c"))
      expect(flow).toEqual(["resume", "pause"])
      expect(yield* inbox.next).toBe("b|c")
      expect(flow).toEqual(["resume", "pause", "resume"])
    }))

  it.effect("the end comes after the reads held before it, and then again to every read", () =>
    Effect.gen(function*() {
      const { inbox } = yield* makeInbox
      inbox.data(bytes("last"))
      inbox.end()
      inbox.data(bytes("after the end: dropped"))
      expect(yield* inbox.next).toBe("last")
      expect(yield* inbox.next).toBe(undefined)
      expect(yield* inbox.next).toBe(undefined)
      expect(inbox.isOver).toBe(true)
    }))

  it.effect("a failure reaches the waiting consumer; a second reader at once is a defect, the first keeps waiting", () =>
    Effect.gen(function*() {
      const { inbox } = yield* makeInbox
      const first = yield* Effect.forkChild(inbox.next, { startImmediately: true })
      const second = yield* Effect.exit(inbox.next)
      expect(Exit.isFailure(second) && Cause.hasDies(second.cause)).toBe(true)
      inbox.fail(idle())
      const exit = yield* Fiber.await(first)
      expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toBeInstanceOf(ChatError.ChatError)
    }))
})

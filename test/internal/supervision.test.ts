/**
 * A server's set of connection fibers (`Supervision.Fibers`, in place of a `FiberSet`): each fiber is in it from
 * its first step to its last, a shutdown waits for it to empty, and closing it interrupts what is left and waits
 * for that; a fiber that starts once it is closed is interrupted at once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as Supervision from "../../src/internal/supervision.ts"

/** Runs `effect` as the effect of a fiber of its own, in `set`, as a server runs a connection. */
const start = <A, E>(set: Supervision.Fibers, effect: Effect.Effect<A, E>) => Effect.runFork(set.tracked(effect))

describe("Supervision.Fibers", () => {
  it.effect("awaitEmpty completes once every fiber in the set has ended", () =>
    Effect.gen(function*() {
      const set = yield* Supervision.Fibers.make
      const gates = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      const fibers = gates.map((gate) => start(set, Deferred.await(gate)))
      const emptied = yield* Effect.forkChild(set.awaitEmpty)
      yield* Deferred.succeed(gates[0], undefined)
      yield* Fiber.await(fibers[0])
      yield* Effect.yieldNow
      expect(emptied.pollUnsafe()).toBeUndefined()
      yield* Deferred.succeed(gates[1], undefined)
      yield* Fiber.join(emptied)
      // an empty set is empty at once
      yield* set.awaitEmpty
    }))

  it.effect("closing its scope interrupts the fibers left and waits for their finalizers", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const set = yield* Scope.provide(Supervision.Fibers.make, scope)
      let finalized = 0
      const fibers = [1, 2].map(() =>
        start(set, Effect.ensuring(Effect.never, Effect.andThen(Effect.yieldNow, Effect.sync(() => finalized++))))
      )
      yield* Scope.close(scope, Exit.void)
      expect(finalized).toBe(2)
      for (const fiber of fibers) expect(Exit.hasInterrupts(fiber.pollUnsafe()!)).toBe(true)
      // a fiber that starts once the set is closed is interrupted at once
      const late = start(set, Effect.never)
      yield* Fiber.await(late)
      expect(Exit.hasInterrupts(late.pollUnsafe()!)).toBe(true)
    }))
})

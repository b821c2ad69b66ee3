import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Stream } from "effect"
import * as AsyncChat from "../../src/AsyncChat.ts"
import type * as Framing from "../../src/Framing.ts"
import * as Input from "../../src/internal/input.ts"
import { implOf } from "../../src/internal/protocol.ts"
import * as Protocol from "../../src/Protocol.ts"
import * as Terminator from "../../src/Terminator.ts"
import { text } from "../helpers.ts"

const frame = (s: string): Framing.Frame => ({ bytes: new TextEncoder().encode(s), terminated: true })

/** A pull as a connection's: one element per pull, then the end; `pulls` counts the pulls taken. */
const countingPull = (elements: ReadonlyArray<unknown>) => {
  const state = { pulls: 0 }
  const pull: Input.One<unknown, never> = Effect.suspend(() => {
    const i = state.pulls++
    return i < elements.length ? Effect.succeed([elements[i]] as const) : Cause.done()
  })
  return { pull, state }
}

/** Runs `protocol`'s handler on `input` as a connection would, without one: `Chat` and `Scope` are not used. */
const runHandler = (protocol: Protocol.Protocol<unknown, never>, input: Stream.Stream<unknown, unknown>) =>
  implOf(protocol).handler(input) as Effect.Effect<unknown, unknown>

describe("the loops of Protocol.forEach, forEachBatch and AsyncChat.make", () => {
  it.effect("drive the connection's own pull, one element a pull, and end with it", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const record = (line: Framing.Frame) => Effect.sync(() => seen.push(text(line.bytes)))
      const protocols = [
        Protocol.forEach(Terminator.lf, record),
        Protocol.forEachBatch(
          Terminator.lf,
          (lines: ReadonlyArray<Framing.Frame>) => Effect.forEach(lines, record, { discard: true })
        ),
        AsyncChat.make({ terminator: Terminator.lf, foundTerminator: record })
      ]
      for (const protocol of protocols) {
        const elements = protocol === protocols[1] ? [[frame("a"), frame("b")]] : [frame("a"), frame("b")]
        const { pull, state } = countingPull(elements)
        // a source as a connection's is: `each` runs `f` on what the next pull hands out
        const source: Input.Source<unknown, never> = {
          pull,
          each: (f) => Effect.flatMap(pull, (one) => f(one[0]))
        }
        yield* runHandler(protocol, Input.fromSource(source))
        expect(state.pulls).toBe(elements.length + 1)
      }
      expect(seen).toEqual(["a", "b", "a", "b", "a", "b"])
    }))

  // The fast path is the only path: a loop that fell back to Stream.runForEach would run here, and pass unseen.
  it.effect("handed a stream that is not a connection's input, die instead of running it as a Stream", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        runHandler(Protocol.forEach(Terminator.lf, () => Effect.void), Stream.make(frame("a")))
      )
      expect(Exit.isFailure(exit) && Cause.hasDies(exit.cause)).toBe(true)
    }))
})

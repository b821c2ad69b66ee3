import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { Buffer } from "node:buffer"
import type { Duplex } from "node:stream"
import {
  duplexPair,
  type MemoryDuplex,
  type Options,
  seeded,
  type Split,
  splitOf
} from "../../src/internal/memory-duplex.ts"
import { nextTurn as settle, recordStream, until } from "../helpers.ts"

const whole: Split = splitOf("whole")
const fixed = (size: number): Split => splitOf(size)
const randomPieces = (seed: number, maxPiece: number): Split => splitOf({ random: seed, maxPiece })

/** A pair on the test's clock. */
const pair = (options: Partial<Omit<Options, "context">> = {}) =>
  Effect.map(
    Effect.context<never>(),
    (context) => duplexPair({ split: whole, delayMillis: 0, capacity: 64 * 1024, ...options, context })
  )

/** Everything a stream emits, in order. */
const record = (stream: Duplex) => recordStream(stream, ["end", "finish", "close", "drain"])

const payload = (size: number, seed: number): Buffer => {
  const random = seeded(seed)
  const out = Buffer.alloc(size)
  for (let i = 0; i < size; i++) out[i] = Math.floor(random() * 256)
  return out
}

/** Writes `data` in writes of seeded random sizes, then ends. */
const writeInPieces = (stream: MemoryDuplex, data: Buffer, seed: number) => {
  const random = seeded(seed)
  for (let i = 0; i < data.length;) {
    const n = Math.min(data.length - i, 1 + Math.floor(random() * 200))
    stream.write(data.subarray(i, i + n))
    i += n
  }
  stream.end()
}

describe("duplexPair", () => {
  const chunkings: ReadonlyArray<readonly [string, () => Split]> = [
    ["whole", () => whole],
    ...Array.from({ length: 9 }, (_, i) => [`${i + 1} bytes`, () => fixed(i + 1)] as const),
    ["100 bytes", () => fixed(100)],
    ["random, seed 1", () => randomPieces(1, 7)],
    ["random, seed 42", () => randomPieces(42, 33)]
  ]
  for (const [name, split] of chunkings) {
    for (const capacity of [5, 64 * 1024]) {
      it.live(`delivers the same bytes in order, cut ${name}, capacity ${capacity}`, () =>
        Effect.gen(function*() {
          const [a, b] = yield* pair({ split: split(), capacity })
          const atB = record(b)
          const atA = record(a)
          const sent = payload(3000, 7)
          writeInPieces(a, sent, 11)
          const back = payload(1000, 8)
          writeInPieces(b, back, 12)
          yield* until(() => atB.events.includes("end") && atA.events.includes("end"))
          expect(Buffer.concat(atB.chunks).equals(sent)).toBe(true)
          expect(Buffer.concat(atA.chunks).equals(back)).toBe(true)
          if (name.endsWith("bytes")) {
            const size = Number(name.split(" ")[0])
            expect(atB.chunks.every((chunk) => chunk.length <= size)).toBe(true)
          }
          expect(atB.chunks.every((chunk) => chunk.length <= capacity)).toBe(true)
        }))
    }
  }

  it.effect("delivers each write whole when it fits, and never inside the write() call", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair()
      const atB = record(b)
      yield* settle
      expect(a.write("hello ")).toBe(true)
      expect(a.write("world")).toBe(true)
      expect(atB.chunks).toEqual([])
      yield* settle
      expect(atB.chunks.map(String)).toEqual(["hello ", "world"])
      // a write from inside a 'data' listener is not delivered inside it either
      let nested = -1
      b.once("data", () => {
        a.write("again")
        nested = atB.chunks.length
      })
      a.write("first")
      yield* until(() => atB.chunks.length === 4)
      expect(nested).toBe(3)
      expect(atB.chunks.map(String).slice(2)).toEqual(["first", "again"])
    }))

  it.effect("holds each piece `delayMillis` on the Effect clock: nothing before TestClock.adjust, all after", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair({ delayMillis: 100, split: fixed(2) })
      const atB = record(b)
      a.write("abcd")
      yield* settle
      yield* TestClock.adjust("60 millis")
      a.write("ef")
      yield* settle
      expect(atB.chunks).toEqual([])
      yield* TestClock.adjust("39 millis")
      yield* settle
      expect(atB.chunks).toEqual([])
      yield* TestClock.adjust("1 millis")
      yield* settle
      // the first write is due at 100, the second at 160
      expect(atB.chunks.map(String)).toEqual(["ab", "cd"])
      yield* TestClock.adjust("60 millis")
      yield* settle
      expect(atB.text()).toBe("abcdef")
      // the FIN comes after the last byte, which has its own delay
      a.write("gh")
      a.end()
      yield* settle
      expect(atB.events).not.toContain("end")
      yield* TestClock.adjust("100 millis")
      yield* until(() => atB.events.includes("end"))
      expect(atB.text()).toBe("abcdefgh")
    }))

  it.effect("a destroyed end drops what was still delayed toward it, and its timer with it", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair({ delayMillis: 100 })
      const atB = record(b)
      a.write("late")
      yield* settle
      b.destroy()
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(atB.chunks).toEqual([])
      expect(atB.events).toEqual(["close"])
      expect(a.bytesInFlight).toBe(0)
    }))

  it.effect("a writer stops while its reader is paused (write false, no 'drain'), and goes on once it reads", () =>
    Effect.gen(function*() {
      const capacity = 16
      const [a, b] = yield* pair({ capacity, writableHighWaterMark: 16, split: fixed(3) })
      const atA = record(a)
      const atB = record(b)
      b.pause()
      let written = 0
      // writes until one returns false and no 'drain' follows: the reader's small buffer may take a little
      for (let round = 0; round < 10; round++) {
        const drains = atA.events.length
        let room = true
        while (room) {
          room = a.write(Buffer.alloc(4, 0x30 + (written % 10)))
          written += 4
        }
        yield* settle
        yield* settle
        if (atA.events.length === drains) break
      }
      expect(atA.events).toEqual(atA.events.filter((e) => e === "drain"))
      const drains = atA.events.length
      // in flight, in the reader's small buffer, and in the writer's: nothing grows past them
      expect(a.bytesInFlight).toBe(capacity)
      expect(written).toBeLessThanOrEqual(capacity + b.readableHighWaterMark + a.writableHighWaterMark + 4)
      const stuck = a.writableLength
      yield* settle
      expect(a.writableLength).toBe(stuck)
      expect(atA.events.length).toBe(drains)
      b.resume()
      yield* until(() => atA.events.length > drains)
      expect(a.writableLength).toBe(0)
      yield* until(() => atB.text().length === written)
      expect(a.bytesInFlight).toBe(0)
    }))

  it.effect("copies what it is handed: the writer may reuse its buffer once called back", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair({ delayMillis: 10, split: fixed(2) })
      const atB = record(b)
      const buffer = Buffer.from("original")
      let called = false
      a.write(buffer, () => {
        called = true
        buffer.fill(0x2d)
      })
      yield* until(() => called)
      yield* TestClock.adjust("10 millis")
      yield* until(() => atB.text().length === 8)
      expect(atB.text()).toBe("original")
    }))

  it.effect("writableLength goes down as the peer reads, however big the write", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair({ capacity: 10, readableHighWaterMark: 1, writableHighWaterMark: 50 })
      const atA = record(a)
      let called = false
      expect(a.write(Buffer.alloc(100, 0x61), () => {
        called = true
      })).toBe(false)
      yield* settle
      // what is in flight is no longer the stream's: only the rest of the write is
      expect(a.writableLength).toBe(90)
      const lengths = [a.writableLength]
      let read = 0
      while (read < 100) {
        const chunk = b.read() as Buffer | null
        if (chunk !== null) read += chunk.length
        yield* settle
        lengths.push(a.writableLength)
      }
      expect(called).toBe(true)
      expect(atA.events).toContain("drain")
      expect(lengths.at(-1)).toBe(0)
      // never up, and down at every read while something was left
      for (let i = 1; i < lengths.length; i++) {
        expect(lengths[i]).toBeLessThanOrEqual(lengths[i - 1])
        if (lengths[i - 1] > 0) expect(lengths[i]).toBeLessThan(lengths[i - 1])
      }
    }))

  it.effect("end() is a half-close either way: the peer reads to the end and may go on writing", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair({ split: fixed(2) })
      const atA = record(a)
      const atB = record(b)
      a.end("question")
      yield* until(() => atB.events.includes("end"))
      expect(atB.text()).toBe("question")
      expect(atA.events).toEqual(["finish"])
      expect(b.writable).toBe(true)
      b.write("answer, ")
      b.write("at length")
      yield* until(() => atA.text() === "answer, at length")
      expect(a.closed || b.closed).toBe(false)
      // the other way round: b ends, a reads its end, and now both directions are over
      b.end()
      yield* until(() => atA.events.includes("close") && atB.events.includes("close"))
      expect(atA.events).toEqual(["finish", "end", "close"])
      expect(atB.events).toEqual(["end", "finish", "close"])
      expect(a.closed && b.closed).toBe(true)
      expect(atA.errors.concat(atB.errors)).toEqual([])
    }))

  it.effect("both ends close once both directions ended, whichever ends first", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair()
      const atA = record(a)
      const atB = record(b)
      b.end("b's last")
      a.end("a's last")
      yield* until(() => a.closed && b.closed)
      expect(atA.text()).toBe("b's last")
      expect(atB.text()).toBe("a's last")
      expect(atA.events).toContain("close")
      expect(atB.events).toContain("close")
    }))

  it.effect("destroy(): the peer reads what was in flight toward it, then its end; its later writes fail", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair({ split: fixed(3) })
      const atA = record(a)
      const atB = record(b)
      b.pause()
      a.write("the answer")
      a.destroy()
      yield* settle
      expect(atA.events).toEqual(["close"])
      expect(atB.chunks).toEqual([])
      b.resume()
      yield* until(() => atB.events.includes("end"))
      expect(atB.text()).toBe("the answer")
      expect(atB.errors).toEqual([])
      b.write("too late")
      yield* until(() => atB.events.includes("close"))
      expect(atB.errors.map((e) => e.code)).toEqual(["ECONNRESET"])
      expect(atB.errors[0].message).toContain("connection reset by peer")
      expect(atB.events).toEqual(["end", "error", "close"])
    }))

  it.effect("destroy(error): the destroyed end emits it; toward it, what was in flight is dropped", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair({ capacity: 4 })
      const atA = record(a)
      const atB = record(b)
      a.pause()
      let heldError: Error | null | undefined = undefined
      // 4 bytes in flight toward a, which does not read, and the rest held
      b.write("unread bytes", (error) => {
        heldError = error
      })
      yield* settle
      expect(b.bytesInFlight).toBe(4)
      a.destroy(new Error("gone"))
      yield* until(() => atA.events.includes("close") && atB.events.includes("close"))
      expect(atA.errors.map((e) => e.message)).toEqual(["gone"])
      expect(atA.chunks).toEqual([])
      expect(b.bytesInFlight).toBe(0)
      // the write that was held fails as a socket's does: the peer reset the connection
      expect((heldError as NodeJS.ErrnoException | undefined)?.code).toBe("ECONNRESET")
      expect(atB.errors.map((e) => e.code)).toEqual(["ECONNRESET"])
    }))

  it.effect("a half-closed end that is destroyed still ends the peer's input cleanly, and the peer can finish", () =>
    Effect.gen(function*() {
      const [a, b] = yield* pair()
      const atB = record(b)
      record(a)
      a.write("bye")
      a.destroy()
      yield* until(() => atB.events.includes("end"))
      // the peer's own end after it: a FIN to a closed end is no error
      b.end()
      yield* until(() => b.closed)
      expect(atB.text()).toBe("bye")
      expect(atB.errors).toEqual([])
      expect(atB.events).toEqual(["end", "finish", "close"])
    }))

  it("rejects a capacity below one byte and a negative delay", () => {
    const options = { split: whole, context: Effect.runSync(Effect.context<never>()) }
    expect(() => duplexPair({ ...options, capacity: 0, delayMillis: 0 })).toThrow(RangeError)
    expect(() => duplexPair({ ...options, capacity: 1, delayMillis: -1 })).toThrow(RangeError)
  })
})

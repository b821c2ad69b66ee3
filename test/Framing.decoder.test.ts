/**
 * `Framing.decoder`, the cursor form, driven through `Framing.decode` at every chunking, and on a connection.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Stream } from "effect"
import * as Chat from "../src/Chat.ts"
import * as ChatClient from "../src/ChatClient.ts"
import * as ChatServer from "../src/ChatServer.ts"
import * as Framing from "../src/Framing.ts"
import * as MemoryTransport from "../src/MemoryTransport.ts"
import * as Protocol from "../src/Protocol.ts"
import { bytes, chunkEvery, latin1, splitAt } from "./helpers.ts"

const COLON = 0x3a
const LF = 0x0a

/** "<n>:" then n bytes. A byte other than a digit before the colon is its typed error, as soon as it is seen. */
const Netstrings = Framing.decoder<Uint8Array, string>({
  decode: (input) => {
    const { bytes, offset } = input
    let n = 0
    for (let i = offset; i < bytes.length; i++) {
      const c = bytes[i]
      if (c === COLON) {
        if (i === offset) return Framing.fail("empty length")
        const end = i + 1 + n
        if (end > bytes.length) return Framing.needMore
        input.offset = end
        return bytes.subarray(i + 1, end)
      }
      if (c < 0x30 || c > 0x39) return Framing.fail(`bad length byte ${String.fromCharCode(c)}`)
      n = n * 10 + c - 0x30
    }
    return Framing.needMore
  }
})

/** Lines ended by "\n" (the message without it); `end` as given. */
const linesWith = (end?: Framing.Decoder<Uint8Array, string>["end"]) =>
  Framing.decoder<Uint8Array, string>({
    decode: (input) => {
      const lf = input.bytes.indexOf(LF, input.offset)
      if (lf < 0) return Framing.needMore
      const line = input.bytes.subarray(input.offset, lf)
      input.offset = lf + 1
      return line
    },
    end
  })

/** What a decode of `chunks` gave: every message emitted (latin-1), then how it failed, if it did. */
const decodeChunks = <E>(
  chunks: ReadonlyArray<Uint8Array>,
  decoder: Framing.Decoding<Uint8Array, E>,
  options?: Framing.Options
) => {
  const messages: Array<string> = []
  const exit = Stream.fromIterable(chunks).pipe(
    Framing.decode(decoder, options),
    Stream.runForEach((message) => Effect.sync(() => messages.push(latin1(message)))),
    Effect.exit,
    Effect.runSync
  )
  return { messages, failure: Exit.isSuccess(exit) ? undefined : failureOf(exit.cause) }
}

/** A failure as plain data: a FrameTooLong's limit and message, a typed error as is, a defect's message. */
const failureOf = (cause: Cause.Cause<unknown>) => {
  if (Cause.hasDies(cause)) return { defect: String((Cause.squash(cause) as Error).message) }
  const error = Cause.squash(cause)
  if (!(error instanceof Framing.FramingError)) return { error }
  const reason = error.reason
  return reason._tag === "FrameTooLong"
    ? { tooLong: reason.limit, terminator: reason.terminator, message: reason.message }
    : { invalid: reason.message }
}

/** `data` at every chunk size from 1 to its length (whole included), and split at every point. */
const everyChunking = (data: string): Array<Array<Uint8Array>> => {
  const whole = Buffer.from(data, "latin1")
  const out: Array<Array<Uint8Array>> = [[whole]]
  for (let size = 1; size < whole.length; size++) out.push(chunkEvery(whole, size))
  for (let at = 1; at < whole.length; at++) out.push(splitAt(whole, [at]))
  return out
}

/** The outcome of `data` must be `expected` at every chunking; `FrameTooLong`'s wording is compared apart. */
const expectAtEveryChunking = <E>(
  data: string,
  decoder: Framing.Decoding<Uint8Array, E>,
  expected: { messages: Array<string>; failure?: unknown },
  options?: Framing.Options
) => {
  for (const chunks of everyChunking(data)) {
    const sizes = chunks.map((c) => c.length).join(",")
    const { messages, failure } = decodeChunks(chunks, decoder, options)
    const seen = failure !== undefined && "tooLong" in failure ? { tooLong: failure.tooLong } : failure
    expect({ sizes, messages, failure: seen }).toEqual({
      sizes,
      messages: expected.messages,
      failure: expected.failure
    })
  }
}

describe("Framing.decoder through Framing.decode", () => {
  it("cuts the same messages at every chunking, a message split anywhere", () => {
    expectAtEveryChunking("5:hello0:3:a:b11:hello\nworld1:x", Netstrings, {
      messages: ["hello", "", "a:b", "hello\nworld", "x"]
    })
    expectAtEveryChunking("one\n\ntwo\nthree\n", linesWith(), { messages: ["one", "", "two", "three"] })
  })

  it("decodes every message of a read where it lies, and again from its start one that spans reads", () => {
    const calls: Array<number> = []
    const Counted = Framing.decoder<Uint8Array, string>({
      decode: (input) => {
        calls.push(input.offset)
        return Netstrings.decode(input)
      }
    })
    // arrays of their own (small Buffers share a pool): a view of the read is told from a copy by its buffer
    const read = Uint8Array.from(bytes("2:ab3:cde1:"))
    const next = Uint8Array.from(bytes("f"))
    const messages = Effect.runSync(Stream.make(read, next).pipe(Framing.decode(Counted), Stream.runCollect))
    expect(messages.map(latin1)).toEqual(["ab", "cde", "f"])
    // one call per message of the first read, a needMore for "1:", then "1:f" decoded again from its start
    expect(calls).toEqual([0, 4, 9, 0])
    expect(messages[0].buffer).toBe(read.buffer)
    expect(messages[1].buffer).toBe(read.buffer)
    expect([read.buffer, next.buffer]).not.toContain(messages[2].buffer)
  })

  it("consumes what a needMore moved the cursor past, goes on from there, and counts none of it in a message", () => {
    const SPACE = 0x20
    // netstrings with runs of spaces between them, consumed on their own
    const Spaced = Framing.decoder<Uint8Array, string>({
      decode: (input) => {
        let at = input.offset
        while (at < input.bytes.length && input.bytes[at] === SPACE) at++
        if (at === input.offset) return Netstrings.decode(input)
        input.offset = at
        return Framing.needMore
      }
    })
    expectAtEveryChunking("   3:abc     4:defg  ", Spaced, { messages: ["abc", "defg"] })
    // "3:abc" is 5 bytes: the spaces before it are not part of it
    expectAtEveryChunking("          3:abc    ", Spaced, { messages: ["abc"] }, { maxFrameLength: 5 })
    expectAtEveryChunking(" 4:abcd", Spaced, { messages: [], failure: { tooLong: 5 } }, { maxFrameLength: 5 })
  })

  it("makes one decoder per stream from the function form, so that each keeps its own state", () => {
    let made = 0
    // a line decoder that remembers how far it searched a line in progress
    const Lines = Framing.decoder<Uint8Array, string>(() => {
      made++
      let searched = 0
      return {
        decode: (input) => {
          const { bytes, offset } = input
          const lf = bytes.indexOf(LF, offset + searched)
          if (lf < 0) {
            searched = bytes.length - offset
            return Framing.needMore
          }
          searched = 0
          input.offset = lf + 1
          return bytes.subarray(offset, lf)
        }
      }
    })
    expectAtEveryChunking("one\ntwo\n\nthree\n", Lines, { messages: ["one", "two", "", "three"] })
    expect(made).toBe(everyChunking("one\ntwo\n\nthree\n").length)
  })

  it("hands `end` exactly the incomplete rest at end of input, and drops it without `end`", () => {
    const rests: Array<string> = []
    const Recorded = linesWith((rest) => {
      rests.push(latin1(rest))
      return [bytes(`${latin1(rest)}...`)]
    })
    for (const chunks of everyChunking("a\nbc\npartial")) {
      rests.length = 0
      expect(decodeChunks(chunks, Recorded)).toEqual({ messages: ["a", "bc", "partial..."], failure: undefined })
      expect(rests).toEqual(["partial"])
    }
    // nothing left: `end` is not called
    rests.length = 0
    expect(decodeChunks(chunkEvery(bytes("a\nb\n"), 1), Recorded).messages).toEqual(["a", "b"])
    expect(rests).toEqual([])
    expectAtEveryChunking("a\nbc\npartial", linesWith(), { messages: ["a", "bc"] })
  })

  it("fails with `end`'s typed error after the messages before it", () => {
    const Strict = Framing.decoder<Uint8Array, string>({
      ...Netstrings,
      end: (rest) => Framing.fail(`cut short: ${latin1(rest)}`)
    })
    expectAtEveryChunking("1:a5:abc", Strict, { messages: ["a"], failure: { error: "cut short: 5:abc" } })
  })

  it("emits the messages of a read before the decoder's failure in it, then fails with that typed error", () => {
    expectAtEveryChunking("5:hello3:abcx:yz", Netstrings, {
      messages: ["hello", "abc"],
      failure: { error: "bad length byte x" }
    })
    const pulled: Array<string> = []
    const exit = Effect.runSync(
      Stream.make(bytes("2:ok3:abc:"), bytes("2:no")).pipe(
        Stream.tap((chunk) => Effect.sync(() => pulled.push(latin1(chunk)))),
        Framing.decode(Netstrings),
        Stream.map(latin1),
        Stream.catch((error) => Stream.make(`<${error}>`)),
        Stream.runCollect
      )
    )
    expect(exit).toEqual(["ok", "abc", "<empty length>"])
    // nothing after the failing read is read
    expect(pulled).toEqual(["2:ok3:abc:"])
  })
})

describe("Framing.decoder maxFrameLength", () => {
  const max = { maxFrameLength: 5 }

  it("passes a message of exactly the limit at every chunking, and fails one byte more", () => {
    expectAtEveryChunking("3:abc3:def", Netstrings, { messages: ["abc", "def"] }, max)
    expectAtEveryChunking("3:abc4:defg3:ghi", Netstrings, { messages: ["abc"], failure: { tooLong: 5 } }, max)
    // the bound counts the whole message, delimiter included
    expectAtEveryChunking("abcd\nabcde\n", linesWith(), { messages: ["abcd"], failure: { tooLong: 5 } }, max)
  })

  it("fails a complete over-long message in one read, and an incomplete one as it grows across reads", () => {
    expect(decodeChunks([bytes("1:a4:defg")], Netstrings, max)).toEqual({
      messages: ["a"],
      failure: {
        tooLong: 5,
        terminator: undefined,
        message: "Message too long: a message of 6 bytes exceeds the limit of 5 bytes"
      }
    })
    expect(decodeChunks(chunkEvery(bytes("1:a4:defg"), 1), Netstrings, max)).toEqual({
      messages: ["a"],
      failure: {
        tooLong: 5,
        terminator: undefined,
        message: "Message too long: a message of at least 6 bytes exceeds the limit of 5 bytes"
      }
    })
  })

  it("buffers no more than the limit from a peer whose message never ends", () => {
    let pulled = 0
    const exit = Effect.runSync(
      Stream.make(bytes("9")).pipe(
        Stream.forever,
        // far more than the limit, and a test that ends if the bound does not
        Stream.take(10_000),
        Stream.tap((chunk) => Effect.sync(() => (pulled += chunk.length))),
        Framing.decode(Netstrings, { maxFrameLength: 100 }),
        Stream.runDrain,
        Effect.exit
      )
    )
    expect(Exit.isFailure(exit) && failureOf(exit.cause)).toMatchObject({ tooLong: 100 })
    expect(pulled).toBe(100)
  })

  it("fails a malformed over-long message with FrameTooLong at every chunking, as a machine's frame would", () => {
    // the decoder sees the bad byte only past the limit: whatever the chunking, the message is too long first
    expectAtEveryChunking("1:a12345678x:", Netstrings, { messages: ["a"], failure: { tooLong: 5 } }, max)
    // within the limit, the decoder's own error
    expectAtEveryChunking("1:a123x:", Netstrings, { messages: ["a"], failure: { error: "bad length byte x" } }, max)
  })

  it("defaults to 64 KiB, and is unbounded only when asked", () => {
    const value = "v".repeat(Framing.defaultMaxFrameLength - 6)
    expect(decodeChunks([bytes(`${value.length}:${value}`)], Netstrings).messages).toEqual([value])
    const over = `${value.length + 1}:${value}v`
    expect(decodeChunks([bytes(over)], Netstrings).failure).toMatchObject({ tooLong: 65536 })
    const unbounded = decodeChunks([bytes(over)], Netstrings, { maxFrameLength: Number.POSITIVE_INFINITY })
    expect(unbounded.messages[0].length).toBe(value.length + 1)
  })
})

/** `decodeChunks` with a decoder made of `decode` alone. */
const decoding = (decode: Framing.Decoder<Uint8Array, never>["decode"], chunks: ReadonlyArray<string>) =>
  decodeChunks(chunks.map(bytes), Framing.decoder({ decode }))

describe("Framing.decoder misbehaving", () => {
  it("a message without moving the cursor, or a cursor moved back or past the bytes, is a defect, not a loop", () => {
    const stuck = decoding((input) => input.bytes.subarray(input.offset, input.offset), ["abc"])
    expect(stuck).toEqual({
      messages: [],
      failure: {
        defect: "A Framing.Decoder returned a message but moved the cursor from 0 to 0 (of 3 bytes): it may move " +
          "forward, past a message it returns, and no further than the bytes it was given"
      }
    })
    // a needMore may move the cursor forward (consuming), not back nor past the bytes
    for (const offset of [-1, 4]) {
      const moved = decoding((input) => {
        input.offset = offset
        return Framing.needMore
      }, ["abc"])
      expect(moved.failure).toEqual({
        defect: `A Framing.Decoder said needMore but moved the cursor from 0 to ${offset} (of 3 bytes): it may ` +
          "move forward, past a message it returns, and no further than the bytes it was given"
      })
    }
    // the second message moves the cursor back to 0
    let calls = 0
    const back = decoding((input) => {
      input.offset = calls++ === 0 ? 2 : 0
      return input.bytes.subarray(0, 2)
    }, ["abcd"])
    expect(back.failure).toMatchObject({ defect: expect.stringMatching(/from 2 to 0 \(of 4 bytes\)/) })
    const past = decoding((input) => {
      input.offset += 10
      return input.bytes
    }, ["abc"])
    expect(past.failure).toMatchObject({ defect: expect.stringMatching(/from 0 to 10 \(of 3 bytes\)/) })
  })
})

/** A netstring of `s`. */
const netstring = (s: string) => `${s.length}:${s}`

/** Answers each netstring with it in upper case; an over-long one or a bad length is answered, then the close. */
const Shout = Protocol.forEach(Netstrings, (body) => Chat.push(netstring(latin1(body).toUpperCase()))).pipe(
  Protocol.mapHandler(Effect.catchReason("ChatError", "FrameTooLong", (r) => Chat.push(netstring(`over ${r.limit}`)))),
  Protocol.mapHandler(Effect.catch((error) => Chat.push(netstring(`failed: ${String(error)}`))))
)

const connectNetstrings = Effect.flatMap(
  MemoryTransport.connector,
  (connector) => ChatClient.connect(connector, { decoder: Netstrings })
)

/** Everything the server answers until it closes, cut by the client's decoder. */
const readAll = (client: ChatClient.Client<Uint8Array, string>) =>
  Effect.map(Stream.runCollect(client.input), (replies) => replies.map(latin1))

describe("Framing.decoder on a connection (Protocol.forEach, ChatClient.connect)", () => {
  it.effect("decodes netstrings sent a byte at a time, both ways", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Shout)
      const client = yield* connectNetstrings
      yield* client.chat.push("5:hello0:11:hello\nworld3:abc")
      yield* client.chat.endOutput
      expect(yield* readAll(client)).toEqual(["HELLO", "", "HELLO\nWORLD", "ABC"])
    }).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer({ chunking: 1 }))))

  it.effect("an over-long message closes only its connection, with ChatError FrameTooLong; a bad one its error", () =>
    Effect.gen(function*() {
      const server = yield* ChatServer.make(Shout, { maxFrameLength: 8 })
      const bystander = yield* connectNetstrings
      const offender = yield* connectNetstrings
      yield* offender.chat.push("3:abc9:too long!2:no")
      expect(yield* readAll(offender)).toEqual(["ABC", "over 8"])
      const malformed = yield* connectNetstrings
      yield* malformed.chat.push("2:ok2x:no")
      expect(yield* readAll(malformed)).toEqual(["OK", "failed: bad length byte x"])
      yield* bystander.chat.push("6:still?")
      expect((yield* Stream.runCollect(Stream.take(bystander.input, 1))).map(latin1)).toEqual(["STILL?"])
      expect(yield* server.count).toBe(1)
    }).pipe(Effect.scoped, Effect.provide(MemoryTransport.layer({ chunking: 1 }))))
})

/**
 * The redis example's two RESP parsers held to each other: `RespRequests` (the decoder the server runs) must cut
 * the same commands and fail the same way as `RespRequestsMachine` (the terminator machine, the reference), on
 * every input, at every chunking. Seeded random inputs (fast-check), and lines and values around the 1 MiB bound.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Stream } from "effect"
import * as fc from "fast-check"
import {
  type Command,
  machineOptions,
  ProtocolError,
  RespRequests,
  RespRequestsMachine,
  serverOptions
} from "../../examples/redis.ts"
import * as Chat from "../../src/Chat.ts"
import * as ChatClient from "../../src/ChatClient.ts"
import * as ChatError from "../../src/ChatError.ts"
import * as ChatServer from "../../src/ChatServer.ts"
import * as Framing from "../../src/Framing.ts"
import * as MemoryTransport from "../../src/MemoryTransport.ts"
import * as Protocol from "../../src/Protocol.ts"
import * as Terminator from "../../src/Terminator.ts"
import { chunkEvery, latin1 } from "../helpers.ts"

const bytes = (s: string) => Buffer.from(s, "latin1")
/** The bound on a line (and a bulk string plus its two bytes): the machine's maxFrameLength. */
const MAX_LINE = machineOptions.maxFrameLength!
const MAX_BULK = MAX_LINE - 2
const SIZES = [1, 2, 3, 7, 64]

type Form = "decoder" | "machine"

/**
 * A failure as plain data. A line over the bound is the same `FrameTooLong` from both, but the decoder fails with
 * it in the `ChatError` a connection gives for the machine's over-long frame, while the machine's comes wrapped by
 * `Framing.decode` in a `FramingError`: each form is only accepted in its own wrapper. The decoder's own request
 * bound (maxFrameLength, a `FramingError`) has no counterpart in the machine.
 */
const failureOf = (form: Form, cause: Cause.Cause<unknown>) => {
  const error = Cause.squash(cause)
  if (error instanceof ProtocolError && !Cause.hasDies(cause)) return { protocol: error.message }
  const line = form === "decoder" ? ChatError.ChatError : Framing.FramingError
  if (error instanceof line && error.reason._tag === "FrameTooLong") {
    const { limit, terminator, message } = error.reason
    return { lineTooLong: { limit, terminator, message } }
  }
  if (form === "decoder" && error instanceof Framing.FramingError && error.reason._tag === "FrameTooLong") {
    return { requestTooLong: error.reason.limit }
  }
  return { unexpected: String(error) }
}

/** The commands `framing` cuts from `chunks` (as strings), then how it failed, if it did. */
const outcomeOf = (
  chunks: ReadonlyArray<Uint8Array>,
  form: Form,
  framing: Framing.Decoding<Command, unknown> | Framing.Machine<any, Command, unknown>,
  options: Framing.Options
) => {
  const commands: Array<Array<string>> = []
  const exit = Stream.fromIterable(chunks).pipe(
    Framing.decode(framing, options),
    Stream.runForEach((command) => Effect.sync(() => commands.push(command.map(latin1)))),
    Effect.exit,
    Effect.runSync
  )
  return { commands, failure: Exit.isSuccess(exit) ? undefined : failureOf(form, exit.cause) }
}

const decoded = (chunks: ReadonlyArray<Uint8Array>, options: Framing.Options = serverOptions) =>
  outcomeOf(chunks, "decoder", RespRequests, options)
const machined = (chunks: ReadonlyArray<Uint8Array>) =>
  outcomeOf(chunks, "machine", RespRequestsMachine, machineOptions)

/** Both forms on `data` at each chunking of `chunkings`: the same outcome as the machine's in one read. */
const expectSame = (data: Uint8Array, chunkings: ReadonlyArray<Array<Uint8Array>>) => {
  const reference = machined([data])
  for (const chunks of chunkings) {
    const sizes = chunks.length > 8 ? `${chunks.length} chunks` : chunks.map((c) => c.length).join(",")
    // "at least n bytes" of an incomplete line depends on where the reads end: compared at the same chunking
    expect({ sizes, machine: machined(chunks) }).toMatchObject({ sizes, machine: { commands: reference.commands } })
    expect({ sizes, decoder: decoded(chunks) }).toEqual({ sizes, decoder: machined(chunks) })
  }
  return reference
}

const smallChunkings = (data: Uint8Array) => [[data], ...SIZES.map((size) => chunkEvery(data, size))]

// Inputs: requests valid and not, joined, maybe cut short. Strings are latin-1, one char a byte.
const bulkValue = fc.oneof(
  fc.string({ unit: fc.constantFrom(..."ab \r\n$*:\"'\\\x00\xff"), maxLength: 12 }),
  fc.constantFrom("", "hello\r\nworld", "\r\n", "$3\r\n", "*1\r\n", "\r")
)
/** The byte after a header's `\r` and the two after a bulk string are skipped unchecked. */
const headerSkip = fc.constantFrom("\n", "\n", "\n", "X", "\r")
const bulkTrail = fc.constantFrom("\r\n", "\r\n", "\r\n", "XY", "\n\n", "\r\r")
const multibulk = fc.tuple(
  fc.array(fc.tuple(bulkValue, headerSkip, bulkTrail), { minLength: 1, maxLength: 4 }),
  headerSkip,
  fc.constantFrom(0, 0, 0, 0, 0, 1, -1)
)
  .map(([args, skip, miscount]) =>
    `*${args.length + (args.length > 1 ? miscount : 0)}\r${skip}` +
    args.map(([value, s, trail]) => `$${value.length}\r${s}${value}${trail}`).join("")
  )
const word = fc.string({ unit: fc.constantFrom(..."abcPING019-_$+:*\x0b\x0c"), minLength: 1, maxLength: 6 })
const doubleQuoted = fc.array(
  fc.constantFrom("a", " ", "\\n", "\\x41", "\\xZZ", "\\x4", "\\\"", "\\\\", "\\z", "'", "\\r"),
  { maxLength: 4 }
)
  .map((parts) => `"${parts.join("")}"`)
const singleQuoted = fc.array(fc.constantFrom("a", " ", "\\'", "\\n", "\"", "\\"), { maxLength: 4 })
  .map((parts) => `'${parts.join("")}'`)
const unbalanced = fc.constantFrom("\"unclosed", "'unclosed", "\"k\"x", "'k'x", "\"a\\\"", "\"\"\"")
const inline = fc.tuple(
  fc.constantFrom("", "", " ", "\t"),
  fc.array(fc.oneof({ weight: 4, arbitrary: word }, doubleQuoted, singleQuoted, unbalanced), { maxLength: 4 }),
  fc.constantFrom(" ", " ", "  ", "\t", " \t "),
  fc.constantFrom("\r\n", "\r\n", "\n", " \r\n", "\r\r\n")
).map(([lead, args, gap, end]) => lead + args.join(gap) + end)
const noRequest = fc.constantFrom(
  "\r\n",
  "\n",
  "  \r\n",
  "\t\n",
  "\r\r\n",
  "\x0b\n",
  "*0\r\n",
  "*-1\r\n",
  "*-5\r\n",
  "*0\rX"
)
const malformed = fc.constantFrom(
  "*x\r\n",
  "*01\r\n",
  "*-0\r\n",
  "*+1\r\n",
  "*\r\n",
  "*1 \r\n",
  "* 1\r\n",
  "*2147483648\r\n",
  "*99999999999999999999\r\n",
  "*1\n$4\r\nping\r\n",
  "*1\r\n$4\nping\r\n",
  "*1\r\n$-1\r\n",
  "*1\r\n+3\r\n",
  "*2\r\n$3\r\nGET\r\n:1\r\n",
  "*1\r\n$01\r\n",
  "*1\r\n$+4\r\nabcd\r\n",
  "*1\r\n$ 4\r\n",
  "*1\r\n$\r\n",
  "*1\r\n\r\n",
  `*1\r\n$${MAX_BULK + 1}\r\n`,
  "*1\r\n$9223372036854775808\r\n",
  "$3\r\nabc\r\n",
  "+PING\r\n",
  ":1\r\n"
)
const part = fc.oneof(
  { weight: 4, arbitrary: multibulk },
  { weight: 3, arbitrary: inline },
  { weight: 2, arbitrary: noRequest },
  { weight: 1, arbitrary: malformed }
)
/** A few requests in one input, cut short at a random byte half the time. */
const input = fc.tuple(fc.array(part, { minLength: 1, maxLength: 10 }), fc.option(fc.nat(), { freq: 2 })).map(
  ([parts, cut]) => {
    const whole = bytes(parts.join(""))
    return cut === null ? whole : whole.subarray(0, cut % (whole.length + 1))
  }
)

/**
 * The decoder on `data` as one read and a byte at a time, without a bound: where each command ends in `data`,
 * each request's own bytes (read a byte at a time, the lone "\n"s, empty lines and `*0`s before it were consumed
 * before it began), and the bytes of the request left incomplete at the end, if it ended without a failure.
 */
const shapeOf = (data: Uint8Array) => {
  const ends: Array<number> = []
  const lengths: Array<number> = []
  let rest = 0
  const recorded = (onMessage: (from: number, to: number) => void) =>
    Framing.decoder<Command, unknown>(() => {
      const decoder = RespRequests()
      return {
        decode: (cursor) => {
          const from = cursor.offset
          const result = decoder.decode(cursor)
          if (Array.isArray(result)) onMessage(from, cursor.offset)
          return result
        },
        end: (bytes) => {
          rest = bytes.length
          return []
        }
      }
    })
  outcomeOf([data], "decoder", recorded((_, to) => ends.push(to)), { maxFrameLength: Infinity })
  rest = 0
  outcomeOf(chunkEvery(data, 1), "decoder", recorded((from, to) => lengths.push(to - from)), {
    maxFrameLength: Infinity
  })
  return { ends, lengths, rest }
}

/** `n` bytes of an inline line, of a count or length, of a value with "\r\n" inside. */
const line = (n: number) => "b".repeat(n)
const digits = (n: number) => "1".repeat(n)
const value = (n: number) => "v\r\n".repeat(Math.ceil(n / 3)).slice(0, n)

describe("redis example: RespRequests against RespRequestsMachine", () => {
  it("cut the same commands and fail the same way on random inputs, at chunks of 1, 2, 3, 7, 64 and whole", () => {
    let commands = 0
    const errors = new Set<string>()
    fc.assert(
      fc.property(input, (data) => {
        const reference = expectSame(data, smallChunkings(data))
        commands += reference.commands.length
        if (reference.failure !== undefined) errors.add(JSON.stringify(reference.failure))
      }),
      { seed: 0x5eed, numRuns: 400 }
    )
    // the generator reaches what it is meant to: commands, and every kind of protocol error
    expect(commands).toBeGreaterThan(400)
    expect([...errors].map((e) => JSON.parse(e).protocol)).toEqual(expect.arrayContaining([
      "expected '$', got '\r'",
      "expected '$', got '+'",
      "invalid bulk length",
      "invalid multibulk length",
      "unbalanced quotes in request"
    ]))
  })

  it("with a smaller maxFrameLength, the decoder bounds each request's bytes and agrees otherwise", () => {
    fc.assert(
      fc.property(input, fc.integer({ min: 1, max: 64 }), (data, max) => {
        const reference = machined([data])
        const { ends, lengths, rest } = shapeOf(data)
        const bounded = (chunks: ReadonlyArray<Uint8Array>) => decoded(chunks, { maxFrameLength: max })
        const whole = bounded([data])
        // the same at every chunking
        for (const size of SIZES) expect({ size, ...bounded(chunkEvery(data, size)) }).toEqual({ size, ...whole })
        // a request longer than `max` (its own bytes: what comes before it is consumed) fails, after those before it
        const over = lengths.findIndex((length) => length > max)
        const last = ends.at(-1) ?? 0
        if (over >= 0) {
          expect(whole).toEqual({ commands: reference.commands.slice(0, over), failure: { requestTooLong: max } })
        } else if (reference.failure === undefined) {
          // the machine cut them all: so does the decoder, unless the request the input cut short is too long
          expect(whole).toEqual(
            rest < max ? reference : { commands: reference.commands, failure: { requestTooLong: max } }
          )
        } else if (data.length - last < max) {
          expect(whole).toEqual(reference)
        } else {
          // what is left after the last command is at least `max`: too long, unless the machine's failure comes
          // within its first `max` bytes
          expect(whole.commands).toEqual(reference.commands)
          expect([{ requestTooLong: max }, reference.failure]).toContainEqual(whole.failure)
        }
      }),
      { seed: 0x5eed + 1, numRuns: 200 }
    )
  })

  it("agree on lines and values around the 1 MiB bound, complete, over, and cut short", () => {
    // name, input, how it fails, and how many commands come before
    const cases: Array<[string, string, string | undefined, number]> = [
      // an inline line after its first byte, up to "\n", is the frame the machine bounds
      ["inline at the bound", `PING\r\na${line(MAX_LINE)}\n`, undefined, 2],
      ["inline over it", `PING\r\na${line(MAX_LINE + 1)}\n`, "lineTooLong", 1],
      ["inline over it by its \\r", `a${line(MAX_LINE)}\r\n`, "lineTooLong", 0],
      ["inline at the bound, cut short", `PING\r\na${line(MAX_LINE)}`, undefined, 1],
      ["inline over it, cut short", `PING\r\na${line(MAX_LINE + 1)}`, "lineTooLong", 1],
      ["a count at the bound", `*${digits(MAX_LINE)}\r\n`, "protocol", 0],
      ["a count over it", `*${digits(MAX_LINE + 1)}\r\n`, "lineTooLong", 0],
      ["a count over it, cut short", `*${digits(MAX_LINE + 1)}`, "lineTooLong", 0],
      ["a bulk header at the bound", `*1\r\n$${digits(MAX_LINE - 1)}\r\n`, "protocol", 0],
      ["a bulk header over it", `*1\r\n$${digits(MAX_LINE)}\r\n`, "lineTooLong", 0],
      ["a bulk header over it, cut short", `*2\r\n$1\r\nx\r\n$${digits(MAX_LINE)}`, "lineTooLong", 0],
      [
        "a value of the largest length",
        `*2\r\n$3\r\nSET\r\n$${MAX_BULK}\r\n${value(MAX_BULK)}\r\nPING\r\n`,
        undefined,
        2
      ],
      ["a value one byte longer", `*2\r\n$3\r\nSET\r\n$${MAX_BULK + 1}\r\n${value(MAX_BULK + 1)}\r\n`, "protocol", 0],
      ["a value cut short", `PING\r\n*2\r\n$3\r\nSET\r\n$${MAX_BULK}\r\n${value(MAX_BULK - 1)}`, undefined, 1],
      [
        "a line over it after a value",
        `*1\r\n$${MAX_BULK}\r\n${value(MAX_BULK)}\r\n${line(MAX_LINE + 2)}\n`,
        "lineTooLong",
        1
      ]
    ]
    for (const [name, text, kind, count] of cases) {
      const data = bytes(text)
      // The bound is crossed within the last bytes: read a byte (or a few) at a time there. Not over the whole
      // input: the decoder reads a request again from its start at each read, which would be quadratic here.
      const head = data.subarray(0, data.length - 300)
      const tail = data.subarray(data.length - 300)
      const chunkings = [[data], chunkEvery(data, 65536), ...SIZES.map((size) => [head, ...chunkEvery(tail, size)])]
      const { commands, failure } = expectSame(data, chunkings)
      const seen = {
        name,
        failure: failure === undefined ? undefined : Object.keys(failure)[0],
        count: commands.length
      }
      expect(seen).toEqual({ name, failure: kind, count })
    }
  })

  it("the decoder bounds a whole request by serverOptions' maxFrameLength; the machine bounds each field alone", () => {
    const values = 17
    const mib = Buffer.alloc(MAX_BULK, 0x76)
    const header = bytes(`*${values}\r\n`)
    const field = Buffer.concat([bytes(`$${MAX_BULK}\r\n`), mib, bytes("\r\n")])
    const data = Buffer.concat([header, ...Array.from({ length: values }, () => field)])
    expect(data.length).toBeGreaterThan(serverOptions.maxFrameLength!)
    const chunks = chunkEvery(data, 65536)
    expect(decoded(chunks)).toEqual({ commands: [], failure: { requestTooLong: serverOptions.maxFrameLength } })
    expect(machined(chunks)).toMatchObject({ commands: [{ length: values }], failure: undefined })
  })
})

/** Each command answered with its arguments' lengths. */
const answer = (command: Command) => Chat.push(`+${command.map((arg) => arg.length).join(",")}\r\n`)

/** Bytes that count the searches made in them: what a decoder reads, whatever the time it takes. */
class Searched extends Uint8Array {
  static searches = 0
  override indexOf(value: number, from?: number): number {
    Searched.searches++
    return super.indexOf(value, from)
  }
}

describe("redis example: RespRequests reads each byte once", () => {
  it("goes on with a request that spans reads from its last whole argument, not from its start", () => {
    const args = 2000
    const request = bytes(`*${args}\r\n` + "$1\r\nx\r\n".repeat(args))
    for (const size of [16, 64, 1024]) {
      // the cutter's way: the bytes of the request so far, from its start, on every read
      const decoder = RespRequests()
      Searched.searches = 0
      let result: unknown = Framing.needMore
      let reads = 0
      for (let end = size; result === Framing.needMore; end += size, reads++) {
        const cursor = { bytes: Searched.from(request.subarray(0, Math.min(end, request.length))), offset: 0 }
        result = decoder.decode(cursor)
      }
      expect((result as Command).length).toBe(args)
      // a search per argument, and one more per read for the argument it stops in (from its start: args x reads / 2)
      expect({ size, within: Searched.searches <= args + 2 * reads + 1 }).toEqual({ size, within: true })
    }
  })
})

describe("redis example: both parsers on a connection", () => {
  // a failure answered by its kind and message, then the close
  const guarded = Protocol.mapHandler(Effect.catch((error: ProtocolError | ChatError.ChatError) =>
    Chat.push(
      error instanceof ChatError.ChatError
        ? `-${error._tag} ${error.reason._tag} ${error.reason.message}\r\n`
        : `-${error._tag} ${error.message}\r\n`
    )
  ))
  const OverDecoder = Protocol.forEach(RespRequests, answer).pipe(guarded)
  const OverMachine = Protocol.forEach(RespRequestsMachine, answer).pipe(guarded)

  const repliesTo = (protocol: typeof OverDecoder, options: ChatServer.Options, sent: string) =>
    Effect.scoped(Effect.gen(function*() {
      yield* ChatServer.make(protocol, options)
      const connector = yield* MemoryTransport.connector
      const client = yield* ChatClient.connect(connector, { terminator: Terminator.crlf, maxFrameLength: 4096 })
      yield* client.chat.push(sent)
      yield* client.chat.endOutput
      return (yield* Stream.runCollect(client.input)).map((frame) => latin1(frame.bytes))
    })).pipe(Effect.provide(MemoryTransport.layer({ chunking: { random: 7, maxPiece: 70_000 } })))

  it.effect("a line over the bound reaches the handler as the same ChatError from both, and so does a bad request", () =>
    Effect.gen(function*() {
      const tooLong = expect.stringMatching(
        /^-ChatError FrameTooLong Frame too long: a frame of (at least )?\d+ bytes exceeds the limit of 1048578 bytes \(terminator delimiter "\\n"\)$/
      )
      const exchanges: Array<[string, Array<unknown>]> = [
        [`PING\r\n*1\r\n$1\r\nx\r\na${"b".repeat(MAX_LINE + 1)}\n`, ["+4", "+1", tooLong]],
        ["*1\r\n$2\r\nok\r\n*1\r\n$x\r\n", ["+2", "-ProtocolError invalid bulk length"]]
      ]
      for (const [sent, expected] of exchanges) {
        const fromDecoder = yield* repliesTo(OverDecoder, serverOptions, sent)
        expect(fromDecoder).toEqual(expected)
        expect(fromDecoder).toEqual(yield* repliesTo(OverMachine, machineOptions, sent))
      }
    }))
})

import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Stream } from "effect"
import * as fc from "fast-check"
import * as Framing from "../src/Framing.ts"
import * as Terminator from "../src/Terminator.ts"
import { bytes, chunkEvery, frameChunks, latin1, show, splitAt, text } from "./helpers.ts"

const SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9]

/** Frames of `data` delivered at every chunk size 1..9 and whole: all must agree with `expected`. */
const expectAtEveryChunking = (
  data: string,
  terminator: Terminator.Terminator,
  expected: Exit.Exit<Array<string>, unknown> | Array<string>,
  options?: Framing.Options
) => {
  const want = Array.isArray(expected) ? Exit.succeed(expected) : expected
  for (const size of [...SIZES, data.length || 1]) {
    const exit = frameChunks(chunkEvery(Buffer.from(data, "latin1"), size), terminator, options)
    expect({ size, exit: simplify(exit) }).toEqual({ size, exit: simplify(want) })
  }
}

/** Exit rendered as plain data: frames, or the failure's tag, reason tag and limit. */
const simplify = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isSuccess(exit)
    ? { frames: exit.value }
    : { failure: Cause.squash(exit.cause) instanceof Framing.FramingError ? reasonOf(exit.cause) : String(exit.cause) }

const reasonOf = (cause: Cause.Cause<unknown>) => {
  const error = Cause.squash(cause) as Framing.FramingError
  return { tag: error._tag, reason: error.reason._tag, limit: "limit" in error.reason ? error.reason.limit : undefined }
}

const tooLong = (limit: number) =>
  Exit.fail(new Framing.FramingError({ reason: new Framing.FrameTooLong({ limit, message: "" }) }))

describe("Framing.frames with a delimiter", () => {
  it("cuts lines at every chunking and keeps the unterminated remainder as a final frame", () => {
    expectAtEveryChunking("hello world\nI'm not dead yet!\ntail", Terminator.lf, [
      "hello world",
      "I'm not dead yet!",
      "tail…"
    ])
  })

  it("finds multi-byte delimiters across chunk boundaries (CRLF, qqq, CRLFCRLF)", () => {
    expectAtEveryChunking("hello world\r\nI'm not dead yet!\r\n", Terminator.crlf, ["hello world", "I'm not dead yet!"])
    expectAtEveryChunking("hello worldqqqI'm not dead yet!qqq", Terminator.delimiter("qqq"), [
      "hello world",
      "I'm not dead yet!"
    ])
    expectAtEveryChunking("GET / HTTP/1.0\r\nHost: x\r\n\r\nbody", Terminator.delimiter("\r\n\r\n"), [
      "GET / HTTP/1.0\r\nHost: x",
      "body…"
    ])
  })

  it("holds back a delimiter prefix at a chunk end: 'qwerty\\r' then '\\n'", () => {
    expect(frameChunks([bytes("qwerty\r"), bytes("\nnext\r\n")], Terminator.crlf)).toEqual(
      Exit.succeed(["qwerty", "next"])
    )
    // a held-back prefix that turns out not to be a delimiter stays in the frame
    expect(frameChunks([bytes("a\r"), bytes("b\r\n")], Terminator.crlf)).toEqual(Exit.succeed(["a\rb"]))
  })

  it("finds self-overlapping delimiters: 'aab' inside 'aaab' arriving as 'aa' + 'ab'", () => {
    expect(frameChunks([bytes("aa"), bytes("ab")], Terminator.delimiter("aab"))).toEqual(Exit.succeed(["a"]))
    expectAtEveryChunking("aaabaab", Terminator.delimiter("aab"), ["a", ""])
    expectAtEveryChunking("abababx", Terminator.delimiter("abab"), ["", "abx…"])
    expectAtEveryChunking("aaaaaaa", Terminator.delimiter("aaa"), ["", "", "a…"])
  })

  it("gives empty frames between adjacent delimiters", () => {
    expectAtEveryChunking("\n\na\n\n", Terminator.lf, ["", "", "a", ""])
    expectAtEveryChunking("\r\n\r\n", Terminator.crlf, ["", ""])
  })

  it("emits nothing for empty input and no final frame when input ends on a terminator", () => {
    expect(frameChunks([], Terminator.lf)).toEqual(Exit.succeed([]))
    expect(frameChunks([bytes(""), bytes("")], Terminator.lf)).toEqual(Exit.succeed([]))
    expect(frameChunks([bytes("a\n")], Terminator.lf)).toEqual(Exit.succeed(["a"]))
  })

  it("hands out views of the input chunk and copies only frames that span chunks", () => {
    const chunk = Buffer.from("one\ntwo\nthr")
    const frames = Effect.runSync(
      Stream.make(chunk, Buffer.from("ee\n")).pipe(Framing.frames(Terminator.lf), Stream.runCollect)
    )
    expect(frames.map(show)).toEqual(["one", "two", "three"])
    expect(frames[0].bytes.buffer).toBe(chunk.buffer)
    expect(frames[1].bytes.buffer).toBe(chunk.buffer)
    expect(frames[2].bytes.buffer).not.toBe(chunk.buffer)
  })

  it("accepts plain Uint8Array chunks as well as Buffers", () => {
    const chunk = new Uint8Array([104, 105, 10, 33])
    expect(frameChunks([chunk], Terminator.lf)).toEqual(Exit.succeed(["hi", "!…"]))
  })

  it("stays linear for a 1 MiB frame in 1-byte chunks", () => {
    const big = Buffer.alloc(1024 * 1024, 0x61)
    const chunks = [...chunkEvery(big, 1), bytes("\r\n")]
    const exit = frameChunks(chunks, Terminator.crlf, { maxFrameLength: big.length })
    expect(Exit.isSuccess(exit) && exit.value.length === 1 && exit.value[0].length === big.length).toBe(true)
  })
})

describe("Framing.frames with a length or none", () => {
  it("cuts exactly n bytes per frame at every chunking", () => {
    expectAtEveryChunking("abcdefgh", Terminator.length(3), ["abc", "def", "gh…"])
    expectAtEveryChunking("abcdef", Terminator.length(1), ["a", "b", "c", "d", "e", "f"])
  })

  it("passes bytes on as they arrive with none, unterminated, never merged or split", () => {
    const chunks = [bytes("ab"), bytes("c"), bytes("defg")]
    expect(frameChunks(chunks, Terminator.none)).toEqual(Exit.succeed(["ab…", "c…", "defg…"]))
  })

  it("refuses a static length(0), which would emit empty frames forever", () => {
    const exit = frameChunks([bytes("x")], Terminator.length(0))
    expect(simplify(exit)).toEqual({ failure: { tag: "FramingError", reason: "InvalidTerminator", limit: undefined } })
  })
})

describe("Framing maxFrameLength", () => {
  it("defaults to 64 KiB", () => {
    expect(Framing.defaultMaxFrameLength).toBe(65536)
    const line = "x".repeat(65536)
    expect(simplify(frameChunks([Buffer.from(line + "\n")], Terminator.lf))).toEqual({ frames: [line] })
    expect(simplify(frameChunks([Buffer.from(line + "x\n")], Terminator.lf))).toEqual(simplify(tooLong(65536)))
  })

  it("decides by the frame's length, whatever the chunking (Twisted #6556)", () => {
    // "xyz\r" + "\n" must be accepted exactly like "xyz\r\n"
    expectAtEveryChunking("xyz\r\n", Terminator.crlf, ["xyz"], { maxFrameLength: 3 })
    expectAtEveryChunking("xyzw\r\n", Terminator.crlf, tooLong(3), { maxFrameLength: 3 })
    expectAtEveryChunking("ab\nxyzw\n", Terminator.lf, tooLong(3), { maxFrameLength: 3 })
    expectAtEveryChunking("abcdefgh", Terminator.length(4), ["abcd", "efgh"], { maxFrameLength: 4 })
    expectAtEveryChunking("abcd", Terminator.length(5), tooLong(4), { maxFrameLength: 4 })
    // an unterminated remainder over the limit is refused at end of input too
    expectAtEveryChunking("ab\nwxyz", Terminator.lf, tooLong(3), { maxFrameLength: 3 })
  })

  it("delivers the frames before an over-long one, then fails once", () => {
    const pulled: Array<string> = []
    const exit = Effect.runSync(
      Stream.make(bytes("ok\nfine\n"), bytes("far too long\n"), bytes("never\n")).pipe(
        Stream.tap((chunk) => Effect.sync(() => pulled.push(text(chunk)))),
        Framing.frames(Terminator.lf, { maxFrameLength: 4 }),
        Stream.map(show),
        Stream.runCollect,
        Effect.exit
      )
    )
    expect(simplify(exit)).toEqual(simplify(tooLong(4)))
    expect(pulled).toEqual(["ok\nfine\n", "far too long\n"])
    const seen = Effect.runSync(
      Stream.make(bytes("ok\nfine\n"), bytes("far too long\n")).pipe(
        Framing.frames(Terminator.lf, { maxFrameLength: 4 }),
        Stream.map(show),
        Stream.catch(() => Stream.make("<error>")),
        Stream.runCollect
      )
    )
    expect(seen).toEqual(["ok", "fine", "<error>"])
  })

  it("buffers no more than the limit plus the delimiter's length from a peer that never terminates", () => {
    let pulled = 0
    const exit = Effect.runSync(
      Stream.make(bytes("a")).pipe(
        Stream.forever,
        Stream.tap((chunk) => Effect.sync(() => (pulled += chunk.length))),
        Framing.frames(Terminator.crlf, { maxFrameLength: 100 }),
        Stream.runDrain,
        Effect.exit
      )
    )
    expect(simplify(exit)).toEqual(simplify(tooLong(100)))
    expect(pulled).toBe(100 + 2)
  })

  it("fails a count over the limit as soon as it is chosen, without waiting for the bytes", () =>
    Effect.gen(function*() {
      const Lengths = Framing.machine({
        initial: undefined as number | undefined,
        terminator: (n) => (n === undefined ? Terminator.lf : Terminator.length(n)),
        step: (n, frame) => (n === undefined ? Framing.next(Number(text(frame.bytes))) : Framing.next(undefined))
      })
      const fiber = yield* Stream.make(bytes("999999\n")).pipe(
        Stream.concat(Stream.never),
        Framing.decode(Lengths, { maxFrameLength: 1000 }),
        Stream.runDrain,
        Effect.forkChild
      )
      const exit = yield* Fiber.await(fiber)
      expect(simplify(exit)).toEqual(simplify(tooLong(1000)))
    }).pipe(Effect.runPromise))

  it("is unbounded only when asked for explicitly", () => {
    const big = Buffer.alloc(200_000, 0x62)
    expect(Exit.isFailure(frameChunks([big, bytes("\n")], Terminator.lf))).toBe(true)
    const exit = frameChunks([big, bytes("\n")], Terminator.lf, { maxFrameLength: Number.POSITIVE_INFINITY })
    expect(Exit.isSuccess(exit) && exit.value[0].length).toBe(200_000)
  })

  it("refuses a nonsensical limit", () => {
    expect(() => Framing.frames(Stream.empty, Terminator.lf, { maxFrameLength: -1 })).toThrow(RangeError)
    expect(() => Framing.frames(Stream.empty, Terminator.lf, { maxFrameLength: 1.5 })).toThrow(RangeError)
  })
})

describe("Framing.frames errors", () => {
  it("passes an upstream failure through unchanged", () => {
    const exit = Effect.runSync(
      Stream.make(bytes("a\nb")).pipe(
        Stream.concat(Stream.fail("boom" as const)),
        Framing.frames(Terminator.lf),
        Stream.map(show),
        Stream.runCollect,
        Effect.exit
      )
    )
    expect(exit).toEqual(Exit.fail("boom"))
  })

  it("renders a readable message for each reason", () => {
    const exit = frameChunks([bytes("abcdef\n")], Terminator.lf, { maxFrameLength: 3 })
    const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
    expect(error).toBeInstanceOf(Framing.FramingError)
    expect((error as Framing.FramingError).message).toBe(
      "Frame too long: a frame of 6 bytes exceeds the limit of 3 bytes (terminator delimiter \"\\n\")"
    )
  })
})

// The mode switches asynchat users write inside found_terminator, as pure machines.
type Http =
  | { readonly _tag: "Headers" }
  | { readonly _tag: "Body"; readonly head: string; readonly length: number }
  | { readonly _tag: "Done" }

const HttpRequest = Framing.machine<Http, string, string>({
  initial: { _tag: "Headers" },
  terminator: (s) =>
    s._tag === "Headers"
      ? Terminator.delimiter("\r\n\r\n")
      : s._tag === "Body"
      ? Terminator.length(s.length)
      : Terminator.none,
  step: (s, frame) => {
    switch (s._tag) {
      case "Headers": {
        const head = latin1(frame.bytes)
        const length = /content-length: *(\S+)/i.exec(head)?.[1]
        if (length === undefined) return Framing.next({ _tag: "Done" }, `${head} []`)
        if (!/^\d+$/.test(length)) return Framing.fail(`bad Content-Length ${length}`)
        return Framing.next({ _tag: "Body", head, length: Number(length) })
      }
      case "Body":
        return Framing.next({ _tag: "Done" }, `${s.head} [${latin1(frame.bytes)}]`)
      case "Done":
        return Framing.next(s) // over-sent bytes are ignored, as in the asynchat handler
    }
  }
})

const decodeChunks = <S, A, E>(
  chunks: ReadonlyArray<Uint8Array>,
  machine: Framing.Machine<S, A, E>,
  options?: Framing.Options
) => Stream.fromIterable(chunks).pipe(Framing.decode(machine, options), Stream.runCollect, Effect.exit, Effect.runSync)

/** The FrameTooLong an exit failed with, if it did. */
const tooLongOf = (exit: Exit.Exit<unknown, unknown>) => {
  const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
  return error instanceof Framing.FramingError && error.reason._tag === "FrameTooLong" ? error.reason : undefined
}

describe("Framing.decode (a state machine switching terminators)", () => {
  const request = "POST /x HTTP/1.0\r\nContent-Length: 5\r\n\r\nhelloEXTRA"

  it("switches headers -> Content-Length -> none, applying each switch to bytes already buffered", () => {
    for (const size of [...SIZES, request.length]) {
      expect(decodeChunks(chunkEvery(Buffer.from(request), size), HttpRequest)).toEqual(
        Exit.succeed(["POST /x HTTP/1.0\r\nContent-Length: 5 [hello]"])
      )
    }
  })

  it("fails with the machine's typed error after delivering earlier messages", () => {
    const input = "GET / HTTP/1.0\r\n\r\n"
    const exit = decodeChunks([bytes(input)], {
      ...HttpRequest,
      step: (s, f) => (s._tag === "Done" ? Framing.fail("no pipelining") : HttpRequest.step(s, f))
    })
    expect(exit).toEqual(Exit.succeed(["GET / HTTP/1.0 []"]))
    expect(decodeChunks([bytes("POST / HTTP/1.0\r\nContent-Length: x\r\n\r\n")], HttpRequest)).toEqual(
      Exit.fail("bad Content-Length x")
    )
  })

  // memcached's shape: command lines are short, values may be long
  type Cache = { readonly value: number | undefined }
  const Cache = Framing.machine<Cache, string>({
    initial: { value: undefined },
    terminator: (s) => (s.value === undefined ? Terminator.crlf : Terminator.length(s.value + 2)),
    maxFrameLength: (s) => (s.value === undefined ? 12 : s.value > 1000 ? undefined : 64 + 2),
    step: (s, frame) => {
      if (s.value !== undefined) return Framing.next({ value: undefined }, `value ${latin1(frame.bytes).slice(0, -2)}`)
      const n = Number(/^set (\d+)$/.exec(latin1(frame.bytes))?.[1])
      return Number.isNaN(n) ? Framing.next(s, latin1(frame.bytes)) : Framing.next({ value: n })
    }
  })

  it("bounds each frame by the machine's maxFrameLength(state): short commands, long values, at every chunking", () => {
    const value = "v".repeat(64)
    const ok = `set 64\r\n${value}\r\nget k\r\n`
    for (const size of [...SIZES, ok.length]) {
      expect(decodeChunks(chunkEvery(Buffer.from(ok), size), Cache, { maxFrameLength: 8 })).toEqual(
        Exit.succeed([`value ${value}`, "get k"])
      )
      // a command line over its 12 bytes, though the connection's bound is far higher
      const command = tooLongOf(decodeChunks(chunkEvery(bytes("get a-long-key\r\n"), size), Cache))
      expect(command).toMatchObject({ limit: 12, terminator: "delimiter \"\\r\\n\"" })
      expect(command?.message).toMatch(
        /^Frame too long: a frame of (at least )?\d+ bytes exceeds the limit of 12 bytes \(terminator delimiter "\\r\\n"\)$/
      )
      // a value over its 66 bytes (64 and its CRLF): the count alone says so
      const long = tooLongOf(decodeChunks(chunkEvery(bytes("set 65\r\n"), size), Cache))
      expect(long).toMatchObject({ limit: 66, terminator: "length 67" })
      // a state without a bound of its own: the connection's maxFrameLength
      const huge = tooLongOf(decodeChunks(chunkEvery(bytes("set 2000\r\n"), size), Cache, { maxFrameLength: 100 }))
      expect(huge).toMatchObject({ limit: 100, terminator: "length 2002" })
    }
  })

  it("cuts 'ECHO n' then n bytes, and RESP '$n' then n + 2 bytes", () => {
    type Echo = { readonly length: number | undefined }
    const Echo = Framing.machine<Echo, string>({
      initial: { length: undefined },
      terminator: (s) => (s.length === undefined ? Terminator.lf : Terminator.length(s.length)),
      step: (s, f) =>
        s.length === undefined
          ? Framing.next({ length: Number(/^ECHO (\d+)$/.exec(text(f.bytes))?.[1]) })
          : Framing.next({ length: undefined }, text(f.bytes))
    })
    const echo = "ECHO 5\nab\ncdECHO 0\nECHO 3\nxyz"
    for (const size of SIZES) {
      expect(decodeChunks(chunkEvery(bytes(echo), size), Echo)).toEqual(Exit.succeed(["ab\ncd", "", "xyz"]))
    }
    const Resp = Framing.machine<number | undefined, string>({
      initial: undefined,
      terminator: (n) => (n === undefined ? Terminator.crlf : Terminator.length(n + 2)),
      step: (n, f) =>
        n === undefined
          ? Framing.next(Number(text(f.bytes).slice(1)))
          : Framing.next(undefined, text(f.bytes.subarray(0, n)))
    })
    for (const size of SIZES) {
      expect(decodeChunks(chunkEvery(bytes("$5\r\nhe\r\no\r\n$0\r\n\r\n"), size), Resp)).toEqual(
        Exit.succeed(["he\r\no", ""])
      )
    }
  })

  it("fires length(0) at once as an empty frame, before any input", () => {
    const Zero = Framing.machine<number, string>({
      initial: 0,
      terminator: (n) => (n === 0 ? Terminator.length(0) : Terminator.lf),
      step: (n, f) => Framing.next(n + 1, `${n}:${text(f.bytes)}`)
    })
    expect(decodeChunks([], Zero)).toEqual(Exit.succeed(["0:"]))
    expect(decodeChunks([bytes("a\n")], Zero)).toEqual(Exit.succeed(["0:", "1:a"]))
  })

  it("ends a machine that picks length(0) forever with InvalidTerminator instead of spinning", () => {
    const Stuck = Framing.machine<number, number>({
      initial: 0,
      terminator: () => Terminator.length(0),
      step: (n) => Framing.next(n + 1)
    })
    const exit = decodeChunks([bytes("abc")], Stuck)
    expect(simplify(exit)).toEqual({
      failure: { tag: "FramingError", reason: "InvalidTerminator", limit: undefined }
    })
  })

  it("turns an invalid terminator chosen from bad input into a typed FramingError", () => {
    const FromHeader = Framing.machine<number | undefined, string>({
      initial: undefined,
      terminator: (n) => (n === undefined ? Terminator.lf : Terminator.length(n)),
      step: (_, f) => Framing.next(Number(text(f.bytes)))
    })
    const exit = decodeChunks([bytes("-5\n")], FromHeader)
    expect(simplify(exit)).toEqual({
      failure: { tag: "FramingError", reason: "InvalidTerminator", limit: undefined }
    })
  })

  it("steps the unterminated remainder, then calls end at end of input", () => {
    const Collect = Framing.machine<Array<string>, string>({
      initial: [],
      terminator: () => Terminator.lf,
      step: (seen, f) => Framing.next([...seen, show(f)]),
      end: (seen) => Framing.next(seen, seen.join("|"))
    })
    expect(decodeChunks([bytes("a\nb\nc")], Collect)).toEqual(Exit.succeed(["a|b|c…"]))
  })

  it("reports a defect when a machine throws something other than InvalidTerminator", () => {
    const Broken = Framing.machine<number, number>({
      initial: 0,
      terminator: () => Terminator.lf,
      step: () => {
        throw new Error("bug")
      }
    })
    const exit = decodeChunks([bytes("a\n")], Broken)
    expect(Exit.isFailure(exit) && Cause.hasDies(exit.cause)).toBe(true)
  })
})

describe("Framing chunking independence (property)", () => {
  const alphabet = fc.constantFrom(..."ab\r\nq")
  const terminators = fc.oneof(
    fc.constantFrom("\n", "\r\n", "aab", "abab", "qqq", "\r\n\r\n", "a").map((d) => Terminator.delimiter(d)),
    fc.integer({ min: 1, max: 12 }).map((n) => Terminator.length(n))
  )

  it("any chunking of the same bytes yields the same frames, bounded or not", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: alphabet, maxLength: 80 }),
        terminators,
        fc.array(fc.nat({ max: 80 }), { maxLength: 20 }),
        fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined }),
        (data, terminator, cuts, maxFrameLength) => {
          const whole = Buffer.from(data, "latin1")
          const options = { maxFrameLength }
          const expected = simplify(frameChunks([whole], terminator, options))
          expect(simplify(frameChunks(splitAt(whole, cuts), terminator, options))).toEqual(expected)
          for (const size of SIZES) {
            expect(simplify(frameChunks(chunkEvery(whole, size), terminator, options))).toEqual(expected)
          }
        }
      ),
      { numRuns: 300 }
    )
  })
})

import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Stream } from "effect"
import { execute, ProtocolError, Redis, RespRequests, Store } from "../../examples/redis.ts"
import * as Framing from "../../src/Framing.ts"
import { redisBenchmark, tool } from "../tools.ts"
import { rawExchange, runProcess, withServer } from "./http-helpers.ts"

const redisCli = tool("redis-cli")

const bytes = (s: string) => Buffer.from(s, "latin1")
const latin1 = (b: Uint8Array) => Buffer.from(b).toString("latin1")
/** A command's arguments as strings. */
const show = (command: ReadonlyArray<Uint8Array>) => command.map(latin1)

/** The commands the RESP machine cuts from `input`, delivered in pieces of `size` bytes. */
const commandsOf = (input: string, size: number) => {
  const data = bytes(input)
  const chunks: Array<Uint8Array> = []
  for (let i = 0; i < data.length; i += size) chunks.push(data.subarray(i, i + size))
  return Stream.fromIterable(chunks).pipe(
    Framing.decode(RespRequests),
    Stream.map(show),
    Stream.runCollect,
    Effect.exit,
    Effect.runSync
  )
}

/** One command executed against `store` at time `now`, the reply as text. */
const reply = (store: Store, now: number, ...args: ReadonlyArray<string>) =>
  execute(store, args.map(bytes), now).map((part) => (typeof part === "string" ? part : latin1(part))).join("")

describe("redis example: RESP framing", () => {
  const pipelined = "*1\r\n$4\r\nPING\r\n" +
    "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$12\r\nhello\r\nworld\r\n" +
    "PING\r\n" +
    "  ECHO   spaced\tout  \r\n" +
    "\r\n" +
    "*0\r\n" +
    "*2\r\n$3\r\nGET\r\n$0\r\n\r\n"

  it("cuts inline and multibulk commands at every chunking, binary-safe", () => {
    for (const size of [1, 2, 3, 5, 7, 11, pipelined.length]) {
      expect(commandsOf(pipelined, size)).toEqual(Exit.succeed([
        ["PING"],
        ["SET", "key", "hello\r\nworld"],
        ["PING"],
        ["ECHO", "spaced", "out"],
        ["GET", ""]
      ]))
    }
  })

  it("fails with a ProtocolError on malformed multibulk input", () => {
    for (const bad of ["*x\r\n", "*2\r\n+3\r\n", "*1\r\n$-1\r\n", "*01\r\n", "*1\r\n$+4\r\n", "GET \"k\"x\r\n"]) {
      const exit = commandsOf(bad, 1)
      expect(
        Exit.isFailure(exit) && exit.cause.reasons.some((r) => r._tag === "Fail" && r.error instanceof ProtocolError)
      )
        .toBe(true)
    }
  })

  it("reads the two bytes after a bulk string unchecked, as Redis does", () => {
    expect(commandsOf("*1\r\n$4\r\npingXY", 1)).toEqual(Exit.succeed([["ping"]]))
  })

  it("splits inline commands as sdssplitargs does: quotes, escapes, empty arguments", () => {
    expect(commandsOf(`SET "a\\x41\\xZZ\\n\\z" 'it\\'s' "" a"b"\r\n`, 3)).toEqual(
      Exit.succeed([["SET", "aAxZZ\nz", "it's", "", "ab"]])
    )
  })
})

describe("redis example: commands", () => {
  it("PING, ECHO, SET, GET, DEL, EXISTS, MGET, INCR, with Redis's replies", () => {
    const store = new Store()
    expect(reply(store, 0, "PING")).toBe("+PONG\r\n")
    expect(reply(store, 0, "ping", "hi")).toBe("$2\r\nhi\r\n")
    expect(reply(store, 0, "ECHO", "a b")).toBe("$3\r\na b\r\n")
    expect(reply(store, 0, "GET", "k")).toBe("$-1\r\n")
    expect(reply(store, 0, "SET", "k", "v1")).toBe("+OK\r\n")
    expect(reply(store, 0, "GET", "k")).toBe("$2\r\nv1\r\n")
    expect(reply(store, 0, "EXISTS", "k", "k", "nope")).toBe(":2\r\n")
    expect(reply(store, 0, "MGET", "k", "nope")).toBe("*2\r\n$2\r\nv1\r\n$-1\r\n")
    expect(reply(store, 0, "INCR", "n")).toBe(":1\r\n")
    expect(reply(store, 0, "INCR", "n")).toBe(":2\r\n")
    expect(reply(store, 0, "INCR", "k")).toBe("-ERR value is not an integer or out of range\r\n")
    expect(reply(store, 0, "DEL", "k", "n", "nope")).toBe(":2\r\n")
    expect(reply(store, 0, "GET", "n")).toBe("$-1\r\n")
  })

  it("expires keys set with EX and PX", () => {
    const store = new Store()
    expect(reply(store, 1000, "SET", "a", "1", "PX", "100")).toBe("+OK\r\n")
    expect(reply(store, 1000, "SET", "b", "2", "ex", "1")).toBe("+OK\r\n")
    expect(reply(store, 1099, "GET", "a")).toBe("$1\r\n1\r\n")
    expect(reply(store, 1100, "GET", "a")).toBe("$-1\r\n")
    expect(reply(store, 1999, "EXISTS", "b")).toBe(":1\r\n")
    expect(reply(store, 2000, "EXISTS", "b")).toBe(":0\r\n")
    expect(reply(store, 0, "SET", "c", "3", "PX", "0")).toBe("-ERR invalid expire time in 'set' command\r\n")
    expect(reply(store, 0, "SET", "c", "3", "XX", "1")).toBe("-ERR syntax error\r\n")
  })

  it("SET NX, XX and GET as Redis 7.0: a refused write is $-1, GET answers the old value", () => {
    const store = new Store()
    expect(reply(store, 0, "SET", "k", "v", "XX")).toBe("$-1\r\n")
    expect(reply(store, 0, "SET", "k", "v", "NX")).toBe("+OK\r\n")
    expect(reply(store, 0, "SET", "k", "w", "NX", "GET")).toBe("$1\r\nv\r\n")
    expect(reply(store, 0, "SET", "k", "w", "GET")).toBe("$1\r\nv\r\n")
    expect(reply(store, 0, "SET", "k", "x", "NX", "XX")).toBe("-ERR syntax error\r\n")
    expect(reply(store, 0, "SET", "k", "x", "EX")).toBe("-ERR syntax error\r\n")
    expect(reply(store, 0, "SET", "k", "x", "EX", "1", "PX", "2")).toBe("-ERR syntax error\r\n")
    expect(reply(store, 0, "SET", "k", "x", "EX", "1", "EX", "2")).toBe("+OK\r\n")
    expect(reply(store, 0, "SET", "k", "x", "EX", "010")).toBe("-ERR value is not an integer or out of range\r\n")
    expect(reply(store, 0, "SET", "k", "x", "EX", "-1")).toBe("-ERR invalid expire time in 'set' command\r\n")
    expect(reply(store, 1, "SET", "k", "x", "PX", "9223372036854775807")).toBe(
      "-ERR invalid expire time in 'set' command\r\n"
    )
  })

  it("INCR, DECR, INCRBY, DECRBY in int64, keeping the key's TTL", () => {
    const store = new Store()
    expect(reply(store, 0, "SET", "n", "9223372036854775806", "PX", "100")).toBe("+OK\r\n")
    expect(reply(store, 0, "INCR", "n")).toBe(":9223372036854775807\r\n")
    expect(reply(store, 0, "INCR", "n")).toBe("-ERR increment or decrement would overflow\r\n")
    expect(reply(store, 100, "GET", "n")).toBe("$-1\r\n")
    expect(reply(store, 0, "DECRBY", "m", "-9223372036854775808")).toBe("-ERR decrement would overflow\r\n")
    expect(reply(store, 0, "INCRBY", "m", "+5")).toBe("-ERR value is not an integer or out of range\r\n")
    expect(reply(store, 0, "DECR", "m")).toBe(":-1\r\n")
    for (const bad of ["007", "-0", " 5", "9223372036854775808"]) {
      reply(store, 0, "SET", "b", bad)
      expect(reply(store, 0, "INCR", "b")).toBe("-ERR value is not an integer or out of range\r\n")
    }
  })

  it("answers unknown commands and wrong arity with -ERR, as Redis words them", () => {
    const store = new Store()
    expect(reply(store, 0, "FLY", "to", "the", "moon", "and", "back")).toBe(
      "-ERR unknown command 'FLY', with args beginning with: 'to' 'the' 'moon' 'and' 'back' \r\n"
    )
    expect(reply(store, 0, "FLY")).toBe("-ERR unknown command 'FLY', with args beginning with: \r\n")
    expect(reply(store, 0, "FLY", "a\r\nb", "x".repeat(200), "c")).toBe(
      `-ERR unknown command 'FLY', with args beginning with: 'a  b' '${"x".repeat(121)}' \r\n`
    )
    expect(reply(store, 0, "GET")).toBe("-ERR wrong number of arguments for 'get' command\r\n")
    expect(reply(store, 0, "SET", "k")).toBe("-ERR wrong number of arguments for 'set' command\r\n")
    expect(reply(store, 0, "INCR", "a", "b")).toBe("-ERR wrong number of arguments for 'incr' command\r\n")
  })

  it("keeps a copy of a value, not a view of the input it arrived in", () => {
    const store = new Store()
    const input = bytes("value")
    execute(store, [bytes("SET"), bytes("k"), input], 0)
    input.fill(0x78)
    expect(reply(store, 0, "GET", "k")).toBe("$5\r\nvalue\r\n")
  })
})

/** redis-cli against `port`: its answer to one command, trailing newlines trimmed. */
const redisCliAt = (port: number) => (...args: ReadonlyArray<string>) =>
  Effect.map(runProcess("redis-cli", ["-p", String(port), ...args]), (r) => r.stdout.toString().trimEnd())

describe("redis example over TCP", () => {
  it.live("answers pipelined commands in order, then a protocol error and a close", () =>
    withServer(Redis(new Store()), {}, (port) =>
      Effect.gen(function*() {
        const exchange = yield* rawExchange(port, [
          "PING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nINCR c\r\n",
          "*1\r\n$x\r\n"
        ])
        expect(exchange.received).toBe("+PONG\r\n+OK\r\n$1\r\nv\r\n:1\r\n-ERR Protocol error: invalid bulk length\r\n")
        expect(exchange.serverClosed).toBe(true)
      })))
  ;(redisCli.available ? it.live : it.live.skip)(
    `works with redis-cli${redisCli.skipReason}`,
    () =>
      withServer(Redis(new Store()), {}, (port) =>
        Effect.gen(function*() {
          redisCli.require()
          const cli = redisCliAt(port)
          expect(yield* cli("PING")).toBe("PONG")
          expect(yield* cli("SET", "greeting", "hello world")).toBe("OK")
          expect(yield* cli("GET", "greeting")).toBe("hello world")
          expect(yield* cli("INCR", "visits")).toBe("1")
          expect(yield* cli("INCR", "visits")).toBe("2")
          expect(yield* cli("MGET", "greeting", "visits", "missing")).toBe("hello world\n2")
          expect(yield* cli("EXISTS", "greeting", "missing")).toBe("1")
          expect(yield* cli("DEL", "greeting")).toBe("1")
          expect(yield* cli("GET", "greeting")).toBe("")
          expect(yield* cli("NOSUCH", "x")).toBe("ERR unknown command 'NOSUCH', with args beginning with: 'x'")
          expect(yield* cli("GET")).toBe("ERR wrong number of arguments for 'get' command")
          // a second: room for a redis-cli process to start on a loaded machine, between the SET and the GET
          expect(yield* cli("SET", "short", "lived", "PX", "1000")).toBe("OK")
          expect(yield* cli("GET", "short")).toBe("lived")
          yield* Effect.sleep("1100 millis")
          expect(yield* cli("GET", "short")).toBe("")
        }))
  )
  ;(redisBenchmark.available ? it.live : it.live.skip)(
    `completes redis-benchmark -t ping,set,get,incr without errors, pipelined or not${redisBenchmark.skipReason}`,
    () =>
      withServer(Redis(new Store()), {}, (port) =>
        Effect.gen(function*() {
          redisBenchmark.require()
          for (const pipeline of ["1", "16"]) {
            const run = yield* runProcess(
              "redis-benchmark",
              ["-p", String(port), "-c", "20", "-n", "4000", "-P", pipeline, "-t", "ping,set,get,incr", "-q"],
              { timeout: "60 seconds" }
            )
            const report = run.stdout.toString().split("\r").join("\n")
            expect(run.code).toBe(0)
            for (const test of ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"]) {
              expect(report).toMatch(new RegExp(`${test}: [\\d.]+ requests per second`))
            }
            expect(`${report}${run.stderr}`).not.toMatch(/error|ERR/i)
          }
        })),
    60_000
  )
})

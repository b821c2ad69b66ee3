/**
 * The redis example against a real redis-server 7.0, the oracle: seeded random commands (valid and not) for every
 * command the example supports, encoded as multibulk and as inline lines, sent pipelined in one write, one by
 * one, and cut at random sizes, to both servers; the replies must agree byte for byte.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Buffer } from "node:buffer"
import * as Net from "node:net"
import { Redis, serverOptions, Store } from "../../examples/redis.ts"
import { tool } from "../tools.ts"
import { freePort, redisServerOn, serve as withServer } from "./peers.ts"

const redisServer = tool("redis-server")

/** mulberry32: a small seeded PRNG, so a failing case is reproduced by its seed. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
type Random = ReturnType<typeof prng>
const pick = <A>(random: Random, items: ReadonlyArray<A>): A => items[Math.floor(random() * items.length)]
const int = (random: Random, below: number) => Math.floor(random() * below)

const KEYS = ["k", "k2", "counter", "", "bin\r\nkey", "\x00\xff"]
const NUMBERS = ["0", "1", "42", "-7", "9223372036854775807", "-9223372036854775808", "9223372036854775806"]
const NOT_NUMBERS = ["007", "+5", "-0", " 5", "5 ", "9223372036854775808", "-9223372036854775809", "1e3", "", "x"]
const VALUES = ["v", "", "hello world", "line\r\nbreak", "\x00nul", "quote\"and'", "back\\slash", "\xff\xfe", "a\tb"]
/** Expiry amounts whose outcome does not depend on the millisecond the servers read their clocks. */
const EXPIRIES = ["100000", "1", "0", "-1", "+5", "010", "abc", "9223372036854775", "9223372036854775807"]
const SET_OPTIONS = ["NX", "XX", "GET", "KEEPTTL", "EX", "PX", "EXAT", "PXAT", "nx", "Ex", "bogus"]
const UNKNOWN = ["nosuch", "FLY", "x\x00y", "\xe9t\xe9", "f".repeat(140), ""]

/** A mix of the argument kinds a command may meet. */
const anyArg = (random: Random) =>
  pick(random, pick(random, [KEYS, NUMBERS, NOT_NUMBERS, VALUES, EXPIRIES, SET_OPTIONS, ["a".repeat(130)]]))

/** Arguments for `name`, around its arity and sometimes beside it. */
const argsFor = (random: Random, name: string): Array<string> => {
  const key = () => pick(random, KEYS)
  const number = () => pick(random, random() < 0.7 ? NUMBERS : NOT_NUMBERS)
  const extra = () => random() < 0.15 ? [anyArg(random)] : []
  const some = (f: () => string) => Array.from({ length: int(random, 4) }, f)
  switch (name) {
    case "ping":
      return random() < 0.5 ? extra() : [pick(random, VALUES), ...extra()]
    case "echo":
    case "get":
    case "incr":
    case "decr":
      return random() < 0.1 ? [] : [name === "echo" ? pick(random, VALUES) : key(), ...extra()]
    case "incrby":
    case "decrby":
      return random() < 0.1 ? [key()] : [key(), number(), ...extra()]
    case "set": {
      const options: Array<string> = []
      for (let n = int(random, 4); n > 0; n--) {
        const option = pick(random, SET_OPTIONS)
        options.push(option)
        if (/^(ex|px)(at)?$/i.test(option) && random() < 0.9) {
          options.push(/at$/i.test(option) && random() < 0.5 ? "1" : pick(random, [...EXPIRIES, number()]))
        }
      }
      return random() < 0.05 ? [key()] : [key(), random() < 0.5 ? number() : pick(random, VALUES), ...options]
    }
    case "del":
    case "exists":
    case "mget":
      return some(key)
    case "flushall":
      return random() < 0.7 ? [] : [pick(random, ["sync", "ASYNC", "now"]), ...extra()]
    default:
      return some(() => anyArg(random))
  }
}

const NAMES = ["ping", "echo", "get", "set", "del", "exists", "incr", "decr", "incrby", "decrby", "mget", "flushall"]
/** A command name, in a random case, or one no server knows. */
const nameFor = (random: Random) => {
  if (random() < 0.08) return { name: "?", spelled: pick(random, UNKNOWN) }
  const name = pick(random, NAMES)
  const spelled = [...name].map((c) => (random() < 0.3 ? c.toUpperCase() : c)).join("")
  return { name, spelled }
}

const bytes = (s: string) => Buffer.from(s, "latin1")
const multibulk = (args: ReadonlyArray<string>) =>
  bytes(`*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join("")}`)

/** One argument on an inline line: bare when it can be, else quoted, with escapes where it needs them. */
const inlineArg = (random: Random, arg: string) => {
  if (/^[!#-&(-[\]-~]+$/.test(arg) && random() < 0.7) return arg
  if (![..."\n\0\\'"].some((c) => arg.includes(c)) && random() < 0.4) return `'${arg}'`
  const escape = (c: string) =>
    /[ !#-[\]-~]/.test(c)
      ? c
      : random() < 0.3 && c === "\n"
      ? "\\n"
      : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`
  return `"${[...arg].map(escape).join("")}"`
}

/** An inline line; only space and tab end a bare argument, while \v and \f may follow a quoted one. */
const inline = (random: Random, args: ReadonlyArray<string>) => {
  let line = pick(random, ["", "", " ", "\t"])
  args.forEach((arg, i) => {
    const encoded = inlineArg(random, arg)
    if (i > 0) line += pick(random, encoded.startsWith("'") || encoded.startsWith("\"") ? [" ", "\t", "  "] : [" "])
    line += encoded
  })
  return bytes(line + pick(random, ["\r\n", "\r\n", "\n", " \r\n"]))
}

/** Requests that end a connection with a protocol error, or that Redis reads in a surprising way. */
const QUIRKS = ["\r\n", "\n", "*0\r\n", "*-1\r\n", "*1\r\n$4\r\npingXY", "*1\r\r$4\r\nPING\r\n", "  \t\r\n"]
const FATAL = [
  "*01\r\n",
  "*+1\r\n",
  "*1 \r\n",
  "*x\r\n",
  "*\r\n",
  "*2147483648\r\n",
  "*1\n$4\r\nping\r\n",
  "*1\r\n$4\nping\r\n",
  "*1\r\n$04\r\n",
  "*1\r\n$+4\r\n",
  "*1\r\n$-1\r\n",
  "*1\r\n+4\r\n",
  "*1\r\n\r\n",
  "get \"k\"x\r\n",
  "get 'k\r\n",
  "echo \"a\"\"b\"\r\n",
  "echo \"ab\"c\n"
]

/** A case: a few requests on one connection, maybe ending with one that closes it. */
interface Case {
  readonly seed: number
  readonly requests: ReadonlyArray<Buffer>
  readonly fatal: boolean
}

const caseOf = (seed: number): Case => {
  const random = prng(seed)
  const requests = [multibulk(["FLUSHALL"])]
  for (let n = 1 + int(random, 6); n > 0; n--) {
    if (random() < 0.06) {
      requests.push(bytes(pick(random, QUIRKS)))
      continue
    }
    const { name, spelled } = nameFor(random)
    const args = [spelled, ...argsFor(random, name)]
    // an inline line cannot start with '*' nor carry an empty command name
    const inlineable = spelled !== "" && !spelled.startsWith("*")
    requests.push(inlineable && random() < 0.4 ? inline(random, args) : multibulk(args))
  }
  const fatal = random() < 0.12
  if (fatal) requests.push(bytes(pick(random, FATAL)))
  return { seed, requests, fatal }
}

/** What a server answered on one connection, whether it closed it, and whether we gave up waiting. */
interface Answer {
  readonly received: string
  readonly closed: boolean
  readonly timedOut: boolean
}

const SENTINEL = (i: number) => ({
  request: multibulk(["ECHO", `~end-${i}~`]),
  reply: `$${`~end-${i}~`.length}\r\n~end-${i}~\r\n`
})

/**
 * Sends `writes` to 127.0.0.1:`port`, each after the previous one's sentinel reply when `await`, and resolves
 * with what arrived once the last sentinel reply did, or the server closed, or 2 seconds passed.
 */
const converse = (port: number, writes: ReadonlyArray<{ data: Buffer; await?: string }>, final: string | undefined) =>
  new Promise<Answer>((resolve) => {
    const socket = Net.createConnection({ host: "127.0.0.1", port, noDelay: true })
    const chunks: Array<Buffer> = []
    let closed = false
    let waiting: { text: string; onArrival: () => void } | undefined = undefined
    const text = () => Buffer.concat(chunks).toString("latin1")
    const finish = (timedOut = false) => {
      clearTimeout(timer)
      socket.destroy()
      resolve({ received: text(), closed, timedOut })
    }
    const timer = setTimeout(() => finish(true), 2000)
    const check = () => {
      if (waiting !== undefined && text().endsWith(waiting.text)) {
        const onArrival = waiting.onArrival
        waiting = undefined
        onArrival()
      }
    }
    socket.on("data", (data) => {
      chunks.push(data)
      check()
    })
    socket.on("error", () => {})
    socket.on("close", () => {
      closed = true
      finish()
    })
    const write = (i: number) => {
      if (i === writes.length) {
        if (final === undefined) return // a fatal request: the close ends the conversation
        waiting = { text: final, onArrival: finish }
        return check()
      }
      socket.write(writes[i].data)
      const awaited = writes[i].await
      if (awaited === undefined) setImmediate(() => write(i + 1))
      else {
        waiting = { text: awaited, onArrival: () => write(i + 1) }
        check()
      }
    }
    socket.on("connect", () => write(0))
  })

type Mode = "pipelined" | "one by one" | "chunked"

/** The writes of `c` in `mode`; a sentinel ECHO marks the end of the replies unless the case closes. */
const writesOf = (c: Case, mode: Mode) => {
  const end = SENTINEL(c.seed)
  const all = Buffer.concat([...c.requests, ...(c.fatal ? [] : [end.request])])
  const final = c.fatal ? undefined : end.reply
  switch (mode) {
    case "pipelined":
      return { writes: [{ data: all }], final }
    case "chunked": {
      const random = prng(c.seed ^ 0x5eed)
      const writes: Array<{ data: Buffer }> = []
      for (let i = 0; i < all.length;) {
        const size = 1 + int(random, 12)
        writes.push({ data: all.subarray(i, i + size) })
        i += size
      }
      return { writes, final }
    }
    case "one by one": {
      // each request is followed by its own sentinel, awaited before the next is sent
      const writes = c.requests.map((data, i) => {
        const last = c.fatal && i === c.requests.length - 1
        const mark = SENTINEL(c.seed * 100 + i)
        return last ? { data } : { data: Buffer.concat([data, mark.request]), await: mark.reply }
      })
      return { writes, final: c.fatal ? undefined : "" }
    }
  }
}

const ask = (port: number, c: Case, mode: Mode) => {
  const { final, writes } = writesOf(c, mode)
  return Effect.promise(() => converse(port, writes, final))
}

/** A real redis-server on a free port, without persistence, killed with the scope. */
const realRedis = Effect.gen(function*() {
  const port = yield* freePort
  yield* redisServerOn(port)
  return port
})

const CASES = 600
const MODES: ReadonlyArray<Mode> = ["pipelined", "one by one", "chunked"]
const show = (c: Case) => JSON.stringify(Buffer.concat(c.requests).toString("latin1"))

describe("redis example against redis-server 7.0", () => {
  ;(redisServer.available ? it.live : it.live.skip)(
    `answers ${CASES} seeded cases byte for byte as redis-server does, however they are written${redisServer.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        redisServer.require()
        const oracle = yield* realRedis
        yield* withServer(Redis(new Store()), serverOptions, (ours) =>
          Effect.gen(function*() {
            const differences: Array<string> = []
            for (let seed = 1; seed <= CASES; seed++) {
              const c = caseOf(seed)
              for (const mode of MODES) {
                const expected = yield* ask(oracle, c, mode)
                const actual = yield* ask(ours, c, mode)
                // a conversation that timed out says the harness, not the servers, lost track
                if (JSON.stringify(expected) !== JSON.stringify(actual) || expected.timedOut) {
                  differences.push(
                    `seed ${seed} (${mode}) sent ${show(c)}\n  redis: ${JSON.stringify(expected)}\n  ours:  ${
                      JSON.stringify(actual)
                    }`
                  )
                }
              }
            }
            expect(differences.slice(0, 5).join("\n")).toBe("")
          }))
      })),
    60_000
  )
})

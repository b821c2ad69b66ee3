/**
 * redis — a mini Redis speaking RESP2, the protocol `redis-cli` and `redis-benchmark` use: inline commands
 * (`PING\r\n`) and multibulk ones (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), where every bulk string is read with a
 * byte-count terminator chosen by a `Framing.Machine`. Commands: PING, ECHO, GET, SET (EX/PX), DEL, EXISTS, INCR,
 * MGET, plus the CONFIG GET / COMMAND probes clients send on start. Pipelined commands arrive together, one
 * batch per read, and are answered in order with one write. A protocol error gets `-ERR Protocol error: ...`
 * and a close, as in Redis.
 *
 * Try it: npm start -- redis --port 6380, then: redis-cli -p 6380 set greeting hello; redis-cli -p 6380 get
 * greeting; redis-benchmark -p 6380 -t ping,set,get,incr -q
 */
import { Clock, Duration, Effect } from "effect"
import { Chat, type ChatServer, Framing, Protocol, Terminator } from "effect-asynchat"
import { Command } from "effect/cli"
import { Buffer } from "node:buffer"
import * as Shared from "./shared.ts"

/** A command: its arguments, the name first. Arguments are views of the input: copy what you keep. */
export type Command = ReadonlyArray<Uint8Array>

/** Why a request cannot be parsed; the connection answers it and closes, as Redis does. */
export class ProtocolError {
  readonly _tag = "ProtocolError"
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

type State =
  | { readonly _tag: "Line" }
  | { readonly _tag: "BulkHeader"; readonly args: Array<Uint8Array>; readonly left: number }
  | { readonly _tag: "Bulk"; readonly args: Array<Uint8Array>; readonly left: number; readonly length: number }

const LINE: State = { _tag: "Line" }
const STAR = 0x2a
const DOLLAR = 0x24
/** Redis's own bounds: 1024*1024 arguments, 512 MB bulk strings; a mini Redis keeps to 1 MiB values. */
const MAX_ARGS = 1024 * 1024
const MAX_BULK = 1024 * 1024

/** A count after a one-byte prefix (`*3`, `$5`) written as Redis's `string2ll` reads a number, or -1. */
const countAfterPrefix = (line: Uint8Array): number => {
  if (line.length < 2 || line.length > 12 || (line[1] === 0x30 && line.length > 2)) return -1
  let n = 0
  for (let i = 1; i < line.length; i++) {
    const d = line[i] - 48
    if (d < 0 || d > 9) return -1
    n = n * 10 + d
  }
  return n
}

const isSpace = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d) // isspace(3): space \t \n \v \f \r
const isHex = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
const ESCAPES: Record<number, number> = { 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07 }

/**
 * An inline command's arguments, split as Redis's `sdssplitargs` splits them: blanks between arguments,
 * `"..."` with the escapes `\xHH \n \r \t \b \a` (any other `\c` is `c`), `'...'` with `\'` alone, quotes in the
 * middle of an argument (`a"b"` is `ab`); undefined when quotes are unbalanced or a closing quote is not
 * followed by a blank. The line is a C string to Redis: it ends at its first NUL.
 */
export const splitInline = (input: Uint8Array): Command | undefined => {
  const nul = input.indexOf(0)
  const line = nul < 0 ? input : input.subarray(0, nul)
  const out: Array<Uint8Array> = []
  let p = 0
  for (;;) {
    while (p < line.length && isSpace(line[p])) p++
    if (p >= line.length) return out
    const arg: Array<number> = []
    let quote = 0
    // as Redis's loop, which steps on past a byte but never past the line's end
    for (let done = false; !done; p = Math.min(p + 1, line.length)) {
      const c = p < line.length ? line[p] : 0
      const next = p + 1 < line.length ? line[p + 1] : 0
      if (quote === 0x22) {
        if (c === 0x5c && next === 0x78 && p + 3 < line.length && isHex(line[p + 2]) && isHex(line[p + 3])) {
          arg.push(Number.parseInt(String.fromCharCode(line[p + 2], line[p + 3]), 16))
          p += 3
        } else if (c === 0x5c && next !== 0) {
          p++
          arg.push(ESCAPES[next] ?? next)
        } else if (c === 0x22) {
          if (next !== 0 && !isSpace(next)) return undefined
          done = true
        } else if (c === 0) return undefined
        else arg.push(c)
      } else if (quote === 0x27) {
        if (c === 0x5c && next === 0x27) {
          p++
          arg.push(0x27)
        } else if (c === 0x27) {
          if (next !== 0 && !isSpace(next)) return undefined
          done = true
        } else if (c === 0) return undefined
        else arg.push(c)
      } else if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0) done = true
      else if (c === 0x22 || c === 0x27) quote = c
      else arg.push(c)
    }
    out.push(Uint8Array.from(arg))
  }
}

const CR = 0x0d

/**
 * RESP requests: a line (an inline command, or `*n`), then `n` times a `$len` line and `len + 2` bytes. As in
 * Redis, a line ends at `\n` (a `\r` before it is dropped), but a `*n` or `$len` line needs its `\r`, and
 * the two bytes after a bulk string are skipped unread.
 */
export const RespRequests = Framing.machine<State, Command, ProtocolError>({
  initial: LINE,
  terminator: (s) =>
    s._tag === "Bulk" ? Terminator.length(s.length + 2) : s._tag === "Line" ? Terminator.lf : Terminator.crlf,
  step: (s, frame) => {
    const bytes = frame.bytes
    switch (s._tag) {
      case "Line": {
        if (bytes[0] !== STAR) {
          const args = splitInline(bytes.at(-1) === CR ? bytes.subarray(0, -1) : bytes)
          if (args === undefined) return Framing.fail(new ProtocolError("unbalanced quotes in request"))
          return args.length === 0 ? Framing.next(LINE) : Framing.next(LINE, args)
        }
        if (bytes.at(-1) !== CR) return Framing.fail(new ProtocolError("invalid multibulk length"))
        const n = countAfterPrefix(bytes.subarray(0, -1))
        if (n < 0 || n > MAX_ARGS) return Framing.fail(new ProtocolError("invalid multibulk length"))
        return n === 0 ? Framing.next(LINE) : Framing.next({ _tag: "BulkHeader", args: [], left: n })
      }
      case "BulkHeader": {
        if (bytes[0] !== DOLLAR) {
          return Framing.fail(new ProtocolError(`expected '$', got '${String.fromCharCode(bytes[0] ?? 32)}'`))
        }
        const length = countAfterPrefix(bytes)
        if (length < 0 || length > MAX_BULK) return Framing.fail(new ProtocolError("invalid bulk length"))
        return Framing.next({ _tag: "Bulk", args: s.args, left: s.left, length })
      }
      case "Bulk": {
        s.args.push(bytes.subarray(0, s.length))
        return s.left === 1
          ? Framing.next(LINE, s.args)
          : Framing.next({ _tag: "BulkHeader", args: s.args, left: s.left - 1 })
      }
    }
  }
})

// Replies, encoded once where they never change.
const OK = Buffer.from("+OK\r\n")
const PONG = Buffer.from("+PONG\r\n")
const NIL = Buffer.from("$-1\r\n")
const EMPTY_ARRAY = Buffer.from("*0\r\n")
const CRLF = Buffer.from("\r\n")
const bulk = (value: Uint8Array): ReadonlyArray<Uint8Array | string> => [`$${value.length}\r\n`, value, CRLF]
const integer = (n: number) => `:${n}\r\n`
/** What `CONFIG GET` reports: an in-memory server that never persists. */
const CONFIG: Record<string, string | undefined> = { save: "", appendonly: "no" }
/** An error reply: Redis writes `\r` and `\n` in its text as spaces; arguments quoted in it are bytes. */
const error = (message: string) => Buffer.from(`-${message.replaceAll(/[\r\n]/g, " ")}\r\n`, "latin1")

/** An entry of the keyspace; `expiresAt` in epoch milliseconds. */
interface Entry {
  readonly value: Uint8Array
  readonly expiresAt: number | undefined
}

/** The keyspace, shared by every connection of one server. Expired keys are dropped when touched. */
export class Store {
  private readonly entries = new Map<string, Entry>()

  get(key: string, now: number): Uint8Array | undefined {
    return this.entry(key, now)?.value
  }

  /** The live entry of `key`, with its expiry. */
  entry(key: string, now: number): Entry | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt !== undefined && entry.expiresAt <= now) {
      this.entries.delete(key)
      return undefined
    }
    return entry
  }

  set(key: string, value: Uint8Array, expiresAt: number | undefined): void {
    this.entries.set(key, { value, expiresAt })
  }

  delete(key: string, now: number): boolean {
    return this.get(key, now) !== undefined && this.entries.delete(key)
  }
}

const keyOf = (arg: Uint8Array) => Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength).toString("latin1")
/** Values outlive the input chunk they arrived in: copy them. */
const own = (arg: Uint8Array): Uint8Array => Uint8Array.prototype.slice.call(arg)
const nameOf = (arg: Uint8Array | undefined) => (arg === undefined ? "" : keyOf(arg).toLowerCase())
const wrongArity = (name: string) => error(`ERR wrong number of arguments for '${name}' command`)

const INT64_MAX = 2n ** 63n - 1n
const INT64_MIN = -(2n ** 63n)
const notAnInteger = () => error("ERR value is not an integer or out of range")

/** A 64-bit integer written as Redis's `string2ll` reads one (no `+`, no leading zero, no blank), or undefined. */
const int64Of = (arg: Uint8Array): bigint | undefined => {
  const text = keyOf(arg)
  if (!/^(0|-?[1-9][0-9]{0,19})$/.test(text)) return undefined
  const n = BigInt(text)
  return n > INT64_MAX || n < INT64_MIN ? undefined : n
}

/** What SET's options ask for, as Redis 7's `parseExtendedStringArgumentsOrReply` reads them. */
interface SetOptions {
  nx: boolean
  xx: boolean
  get: boolean
  keepTtl: boolean
  expiry: { readonly unit: "ex" | "px" | "exat" | "pxat"; readonly amount: Uint8Array } | undefined
}

/** SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]: its options, or an error reply. */
const setOptionsOf = (args: Command): SetOptions | Uint8Array => {
  const options: SetOptions = { nx: false, xx: false, get: false, keepTtl: false, expiry: undefined }
  for (let j = 3; j < args.length; j++) {
    const option = nameOf(args[j])
    const unit = options.expiry?.unit
    if (option === "nx" && !options.xx) options.nx = true
    else if (option === "xx" && !options.nx) options.xx = true
    else if (option === "get") options.get = true
    else if (option === "keepttl" && unit === undefined) options.keepTtl = true
    else if (
      (option === "ex" || option === "px" || option === "exat" || option === "pxat") && !options.keepTtl &&
      (unit === undefined || unit === option) && j + 1 < args.length
    ) options.expiry = { unit: option, amount: args[++j] }
    else return error("ERR syntax error")
  }
  return options
}

/** The expiry in epoch milliseconds that `expiry` asks for, or an error reply (Redis's wording and bounds). */
const expiresAtOf = (expiry: NonNullable<SetOptions["expiry"]>, now: number): number | Uint8Array => {
  const amount = int64Of(expiry.amount)
  if (amount === undefined) return notAnInteger()
  const seconds = expiry.unit === "ex" || expiry.unit === "exat"
  const invalid = () => error("ERR invalid expire time in 'set' command")
  if (amount <= 0n || (seconds && amount > INT64_MAX / 1000n)) return invalid()
  const millis = (seconds ? amount * 1000n : amount) + (expiry.unit === "ex" || expiry.unit === "px" ? BigInt(now) : 0n)
  // Redis's sum wraps past 64 bits to a negative number, which it refuses
  return millis > INT64_MAX ? invalid() : Number(millis)
}

/** SET, as Redis 7 does it: options first, then the expiry's number, then GET's old value, then NX / XX. */
const set = (store: Store, args: Command, now: number): ReadonlyArray<Uint8Array | string> => {
  const options = setOptionsOf(args)
  if (options instanceof Uint8Array) return [options]
  const expiresAt = options.expiry === undefined ? undefined : expiresAtOf(options.expiry, now)
  if (expiresAt instanceof Uint8Array) return [expiresAt]
  const key = keyOf(args[1])
  const old = store.entry(key, now)
  const replies = options.get ? (old === undefined ? [NIL] : bulk(old.value)) : [OK]
  if ((options.nx && old !== undefined) || (options.xx && old === undefined)) return options.get ? replies : [NIL]
  store.set(key, own(args[2]), options.keepTtl ? old?.expiresAt : expiresAt)
  return replies
}

/** INCR: a canonical 64-bit integer (or no value) plus one; the key keeps its time to live. */
const incr = (store: Store, key: string, now: number): ReadonlyArray<Uint8Array | string> => {
  const entry = store.entry(key, now)
  const n = entry === undefined ? 0n : int64Of(entry.value)
  if (n === undefined) return [notAnInteger()]
  if (n === INT64_MAX) return [error("ERR increment or decrement would overflow")]
  store.set(key, Buffer.from(String(n + 1n)), entry?.expiresAt)
  return [`:${n + 1n}\r\n`]
}

/** The bytes of `arg` up to its first NUL, at most `max` of them: what C's `%.*s` prints of it. */
const cString = (arg: Uint8Array, max: number): string => {
  const nul = arg.indexOf(0)
  return keyOf(arg.subarray(0, Math.min(nul < 0 ? arg.length : nul, max)))
}

/** Redis's answer to a command it does not know: its name and, while under 128 bytes, its first arguments. */
const unknownCommand = (args: Command): Uint8Array => {
  let quoted = ""
  for (let i = 1; i < args.length && quoted.length < 128; i++) quoted += `'${cString(args[i], 128 - quoted.length)}' `
  return error(`ERR unknown command '${cString(args[0], 128)}', with args beginning with: ${quoted}`)
}

/** Executes one command against `store`; what it returns is pushed as the reply. */
export const execute = (store: Store, args: Command, now: number): ReadonlyArray<Uint8Array | string> => {
  const name = nameOf(args[0])
  switch (name) {
    case "ping":
      return args.length === 1 ? [PONG] : args.length === 2 ? bulk(args[1]) : [wrongArity(name)]
    case "echo":
      return args.length === 2 ? bulk(args[1]) : [wrongArity(name)]
    case "get": {
      if (args.length !== 2) return [wrongArity(name)]
      const value = store.get(keyOf(args[1]), now)
      return value === undefined ? [NIL] : bulk(value)
    }
    case "set":
      return args.length < 3 ? [wrongArity(name)] : set(store, args, now)
    case "del":
    case "exists": {
      if (args.length < 2) return [wrongArity(name)]
      let n = 0
      for (let i = 1; i < args.length; i++) {
        const key = keyOf(args[i])
        if (name === "del" ? store.delete(key, now) : store.get(key, now) !== undefined) n++
      }
      return [integer(n)]
    }
    case "incr":
      return args.length === 2 ? incr(store, keyOf(args[1]), now) : [wrongArity(name)]
    case "mget": {
      if (args.length < 2) return [wrongArity(name)]
      const out: Array<Uint8Array | string> = [`*${args.length - 1}\r\n`]
      for (let i = 1; i < args.length; i++) {
        const value = store.get(keyOf(args[i]), now)
        if (value === undefined) out.push(NIL)
        else out.push(...bulk(value))
      }
      return out
    }
    // Probes sent by redis-cli and redis-benchmark on start.
    case "config": {
      if (nameOf(args[1]) !== "get" || args.length !== 3) return [EMPTY_ARRAY]
      const parameter = nameOf(args[2])
      const value = CONFIG[parameter]
      return value === undefined
        ? [EMPTY_ARRAY]
        : ["*2\r\n", ...bulk(Buffer.from(parameter)), ...bulk(Buffer.from(value))]
    }
    case "command":
      return [EMPTY_ARRAY]
    default:
      return [unknownCommand(args)]
  }
}

/**
 * A RESP server over `store`. Commands come in batches, one per read (`Protocol.batches`): a pipelined batch is
 * executed with one clock reading and answered with one push.
 */
export const Redis = (store: Store) =>
  Protocol.batches(RespRequests, (batches) =>
    Effect.gen(function*() {
      const chat = yield* Chat.Chat
      yield* Protocol.runForEach(batches, (commands) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const replies: Array<Uint8Array | string> = []
          for (let i = 0; i < commands.length; i++) {
            const reply = execute(store, commands[i], now)
            for (let j = 0; j < reply.length; j++) replies.push(reply[j])
          }
          return chat.push(...replies)
        }))
    }).pipe(
      Effect.catchIf(
        (e): e is ProtocolError => e instanceof ProtocolError,
        (e) => Chat.push(error(`ERR Protocol error: ${e.message}`))
      )
    ))

/** 1 MiB values plus their CRLF; like Redis (timeout 0), no idle timeout: idle clients are normal. */
export const serverOptions: ChatServer.Options = { maxFrameLength: MAX_BULK + 2, idleTimeout: Duration.infinity }

/** Runs the server on `host:port`. */
export const run = (options: Shared.ServerFlags) =>
  Shared.serveTcp(Redis(new Store()), {
    ...options,
    name: "redis",
    tryIt: (host, port) => [
      `redis-cli -h ${host} -p ${port} set greeting hello`,
      `redis-benchmark -h ${host} -p ${port} -t ping,set,get,incr -q`
    ],
    server: Shared.withLimits(serverOptions, options)
  })

/** `npm start -- redis [--host H] [--port N]` */
export const command = Command.make("redis", Shared.serverFlags(6380, serverOptions), run).pipe(
  Command.withDescription("a mini Redis (RESP2): PING ECHO GET SET DEL EXISTS INCR MGET, pipelining")
)

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

/** A non-negative decimal after a one-byte prefix (`*3`, `$5`), or -1. */
const countAfterPrefix = (line: Uint8Array): number => {
  if (line.length < 2 || line.length > 12) return -1
  let n = 0
  for (let i = 1; i < line.length; i++) {
    const d = line[i] - 48
    if (d < 0 || d > 9) return -1
    n = n * 10 + d
  }
  return n
}

const splitInline = (line: Uint8Array): Command => {
  const out: Array<Uint8Array> = []
  let start = -1
  for (let i = 0; i <= line.length; i++) {
    const space = i === line.length || line[i] === 0x20 || line[i] === 0x09
    if (space && start >= 0) {
      out.push(line.subarray(start, i))
      start = -1
    } else if (!space && start < 0) start = i
  }
  return out
}

/** RESP requests: a line (inline command, or `*n`), then `n` times a `$len` line and `len + 2` bytes. */
export const RespRequests = Framing.machine<State, Command, ProtocolError>({
  initial: LINE,
  terminator: (s) => (s._tag === "Bulk" ? Terminator.length(s.length + 2) : Terminator.crlf),
  step: (s, frame) => {
    const bytes = frame.bytes
    switch (s._tag) {
      case "Line": {
        if (bytes.length === 0) return Framing.next(LINE)
        if (bytes[0] !== STAR) return Framing.next(LINE, splitInline(bytes))
        const n = countAfterPrefix(bytes)
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
        if (bytes[s.length] !== 0x0d || bytes[s.length + 1] !== 0x0a) {
          return Framing.fail(new ProtocolError("bulk string not followed by CRLF"))
        }
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
const error = (message: string) => `-${message}\r\n`

/** An entry of the keyspace; `expiresAt` in epoch milliseconds. */
interface Entry {
  readonly value: Uint8Array
  readonly expiresAt: number | undefined
}

/** The keyspace, shared by every connection of one server. Expired keys are dropped when touched. */
export class Store {
  private readonly entries = new Map<string, Entry>()

  get(key: string, now: number): Uint8Array | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt !== undefined && entry.expiresAt <= now) {
      this.entries.delete(key)
      return undefined
    }
    return entry.value
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

/** SET key value [EX seconds | PX milliseconds]: the expiry, `undefined` for none, or an error reply. */
const expiryOf = (args: Command, now: number): number | undefined | string => {
  if (args.length === 3) return undefined
  if (args.length !== 5) return error("ERR syntax error")
  const option = nameOf(args[3])
  const amount = Number(keyOf(args[4]))
  if (!Number.isSafeInteger(amount) || amount <= 0) return error("ERR invalid expire time in 'set' command")
  if (option === "ex") return now + amount * 1000
  if (option === "px") return now + amount
  return error("ERR syntax error")
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
    case "set": {
      if (args.length < 3) return [wrongArity(name)]
      const expiresAt = expiryOf(args, now)
      if (typeof expiresAt === "string") return [expiresAt]
      store.set(keyOf(args[1]), own(args[2]), expiresAt)
      return [OK]
    }
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
    case "incr": {
      if (args.length !== 2) return [wrongArity(name)]
      const key = keyOf(args[1])
      const current = store.get(key, now)
      const n = current === undefined ? 0 : Number(keyOf(current))
      if (current !== undefined && !/^-?\d+$/.test(keyOf(current))) {
        return [error("ERR value is not an integer or out of range")]
      }
      if (!Number.isSafeInteger(n + 1)) return [error("ERR increment or decrement would overflow")]
      store.set(key, Buffer.from(String(n + 1)), undefined)
      return [integer(n + 1)]
    }
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
    default: {
      const rest = args.slice(1, 4).map((a) => `'${keyOf(a)}'`).join(" ")
      return [error(`ERR unknown command '${keyOf(args[0] ?? new Uint8Array())}', with args beginning with: ${rest}`)]
    }
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

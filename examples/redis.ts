/**
 * redis — a mini Redis speaking RESP2, the protocol `redis-cli` and `redis-benchmark` use: inline commands
 * (`PING\r\n`) and multibulk ones (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), where every bulk string is read with a
 * byte-count terminator chosen by a `Framing.Machine`. Commands: PING, ECHO, GET, SET (NX/XX/GET, EX/PX/EXAT/PXAT/
 * KEEPTTL), DEL, EXISTS, INCR, DECR, INCRBY, DECRBY, MGET, FLUSHALL, plus the CONFIG GET / COMMAND probes clients
 * send on start. Requests are parsed, and replies and errors worded, byte for byte as redis-server 7.0 does
 * (a differential test holds it to that). Pipelined commands arrive together, one batch per read, and are
 * answered in order with one write. A protocol error gets `-ERR Protocol error: ...` and a close, as in Redis.
 * On a graceful shutdown each connection answers the batch it has read, then closes.
 *
 * Try it: npm start -- redis --port 6380, then: redis-cli -p 6380 set greeting hello; redis-cli -p 6380 get
 * greeting; redis-benchmark -p 6380 -t ping,set,get,incr -q
 */
import { Clock, Duration, Effect } from "effect"
import { Chat, ChatError, type ChatServer, Framing, Protocol, Terminator } from "effect-asynchat"
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

/**
 * Where the parser is. Redis picks the request type by its first byte, ends an inline line at `\n`, ends a
 * `*n`/`$n` header at `\r` and then steps over one byte without looking at it (it need not be `\n`).
 */
type State =
  | { readonly _tag: "Start" }
  | { readonly _tag: "Inline"; readonly first: number }
  | { readonly _tag: "Count" }
  | { readonly _tag: "Skip"; readonly next: State }
  | { readonly _tag: "BulkHeader"; readonly args: Array<Uint8Array>; readonly left: number }
  | { readonly _tag: "Bulk"; readonly args: Array<Uint8Array>; readonly left: number; readonly length: number }

const START: State = { _tag: "Start" }
const STAR = 0x2a
const DOLLAR = 0x24
const LF = 0x0a
const CR = 0x0d
const CR_DELIMITER = Terminator.delimiter("\r")
/** Redis's bound on the argument count is INT_MAX; its 512 MB bulk strings are kept to 1 MiB here. */
const MAX_ARGS = 2 ** 31 - 1
const MAX_BULK = 1024 * 1024
const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

// the input's bytes are Buffers already: no wrapper to make for them
const latin1 = (bytes: Uint8Array) =>
  (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).toString("latin1")

/**
 * Redis's `string2ll`: a canonical decimal int64 (no sign but `-`, no leading zero, no `-0`, no spaces), or
 * `undefined`. Every count, length and number Redis reads goes through it.
 * @example
 * ```ts
 * int64Of(Buffer.from("-42")) // -42n
 * int64Of(Buffer.from("007")) // undefined
 * ```
 */
export const int64Of = (bytes: Uint8Array): bigint | undefined => {
  const text = latin1(bytes)
  if (text.length >= 21 || !/^(0|-?[1-9][0-9]*)$/.test(text)) return undefined
  const n = BigInt(text)
  return n < INT64_MIN || n > INT64_MAX ? undefined : n
}

/**
 * `int64Of(bytes[from, to))` as a number, for the counts and lengths of the request parser: read digit by digit
 * while it is short enough to be exact (every count and length in practice), else through `int64Of`.
 */
const countOf = (bytes: Uint8Array, from: number, to: number): number | undefined => {
  const n = to - from
  if (n === 0 || n > 15) return n === 0 ? undefined : toNumber(int64Of(bytes.subarray(from, to)))
  let i = from
  const negative = bytes[i] === 0x2d
  if (negative && ++i === to) return undefined
  // no leading zero, and no "-0"
  if (bytes[i] === 0x30 && (to - i > 1 || negative)) return undefined
  let value = 0
  for (; i < to; i++) {
    const digit = bytes[i] - 0x30
    if (digit < 0 || digit > 9) return undefined
    value = value * 10 + digit
  }
  return negative ? -value : value
}

const toNumber = (n: bigint | undefined) => (n === undefined ? undefined : Number(n))

/** Space as C's `isspace` sees it: what `sdssplitargs` skips between arguments. */
const isSpace = (c: number | undefined) => c === 0x20 || (c !== undefined && c >= 0x09 && c <= 0x0d)
const isHex = (c: number | undefined) => c !== undefined && /[0-9a-fA-F]/.test(String.fromCharCode(c))
const ESCAPES: Record<string, number> = { n: 0x0a, r: 0x0d, t: 0x09, b: 0x08, a: 0x07 }

/**
 * Redis's `sdssplitargs`: an inline line split into arguments, with "double quotes" (escapes `\xHH`, `\n`, `\r`,
 * `\t`, `\b`, `\a`, any other `\c` is `c`) and 'single quotes' (only `\'`), or `undefined` for unbalanced
 * quotes, including a closing quote not followed by a space or the end.
 * @example
 * ```ts
 * splitArgs(Buffer.from(`set k "a\\x41\\n" 'it\\'s'`)) // ["set", "k", "aA\n", "it's"] as bytes
 * splitArgs(Buffer.from(`get "k"x`)) // undefined
 * ```
 */
export const splitArgs = (line: Uint8Array): Command | undefined => {
  const out: Array<Uint8Array> = []
  let i = 0
  for (;;) {
    while (isSpace(line[i])) i++
    if (i >= line.length) return out
    // an argument without quotes is a view of the line; one with quotes is made byte by byte
    const start = i
    let arg: Array<number> | undefined = undefined
    let quote: number | undefined = undefined
    for (;; i++) {
      const c = line[i]
      if (quote === undefined) {
        // unquoted: only these end an argument (\v and \f do not, though they are skipped between arguments)
        if (c === undefined || c === 0x20 || c === LF || c === CR || c === 0x09) break
        if (c === 0x22 || c === 0x27) {
          quote = c
          arg ??= Array.from(line.subarray(start, i))
        } else arg?.push(c)
      } else if (c === undefined) {
        return undefined
      } else if (c === quote) {
        if (i + 1 < line.length && !isSpace(line[i + 1])) return undefined
        i++
        break
      } else if (c === 0x5c && quote === 0x22 && line[i + 1] === 0x78 && isHex(line[i + 2]) && isHex(line[i + 3])) {
        arg!.push(parseInt(String.fromCharCode(line[i + 2], line[i + 3]), 16))
        i += 3
      } else if (c === 0x5c && quote === 0x22 && i + 1 < line.length) {
        const escaped = line[++i]
        arg!.push(ESCAPES[String.fromCharCode(escaped)] ?? escaped)
      } else if (c === 0x5c && quote === 0x27 && line[i + 1] === 0x27) {
        arg!.push(line[++i])
      } else {
        arg!.push(c)
      }
    }
    out.push(arg === undefined ? line.subarray(start, i) : Uint8Array.from(arg))
  }
}

/** An inline line: its first byte, read alone, then the rest up to `\n`, less one `\r` before it. */
const inlineLine = (first: number, rest: Uint8Array): Uint8Array => {
  const line = new Uint8Array(rest.length + 1)
  line[0] = first
  line.set(rest, 1)
  return line[line.length - 1] === CR ? line.subarray(0, line.length - 1) : line
}

/** A bulk header that does not start with `$`; an empty header line shows the `\r` that ends it. */
const notABulk = (bytes: Uint8Array, from: number, to: number) =>
  new ProtocolError(`expected '$', got '${from === to ? "\r" : String.fromCharCode(bytes[from])}'`)

/**
 * RESP requests, cut as Redis 7 cuts them, by a terminator machine: the first byte tells an inline command from
 * `*n`; a multibulk request is then `n` times a `$len` header and `len` bytes plus two that are skipped
 * unchecked. A field a frame: the reference `RespRequests` is held to, at every chunking.
 */
export const RespRequestsMachine = Framing.machine<State, Command, ProtocolError>({
  initial: START,
  terminator: (s) => {
    switch (s._tag) {
      case "Start":
      case "Skip":
        return Terminator.length(1)
      case "Inline":
        return Terminator.lf
      case "Count":
      case "BulkHeader":
        return CR_DELIMITER
      case "Bulk":
        return Terminator.length(s.length + 2)
    }
  },
  step: (s, frame) => {
    // a request cut short by the end of input is dropped, as Redis drops it
    if (!frame.terminated) return Framing.next(START)
    const bytes = frame.bytes
    switch (s._tag) {
      case "Start": {
        if (bytes[0] === STAR) return Framing.next({ _tag: "Count" })
        return bytes[0] === LF ? Framing.next(START) : Framing.next({ _tag: "Inline", first: bytes[0] })
      }
      case "Inline": {
        const args = splitArgs(inlineLine(s.first, bytes))
        if (args === undefined) return Framing.fail(new ProtocolError("unbalanced quotes in request"))
        return args.length === 0 ? Framing.next(START) : Framing.next(START, args)
      }
      case "Count": {
        const n = countOf(bytes, 0, bytes.length)
        if (n === undefined || n > MAX_ARGS) return Framing.fail(new ProtocolError("invalid multibulk length"))
        // *0 and negative counts are no request at all
        return Framing.next({ _tag: "Skip", next: n <= 0 ? START : { _tag: "BulkHeader", args: [], left: n } })
      }
      case "Skip":
        return Framing.next(s.next)
      case "BulkHeader": {
        if (bytes[0] !== DOLLAR) return Framing.fail(notABulk(bytes, 0, bytes.length))
        const length = countOf(bytes, 1, bytes.length)
        if (length === undefined || length < 0 || length > MAX_BULK) {
          return Framing.fail(new ProtocolError("invalid bulk length"))
        }
        return Framing.next({ _tag: "Skip", next: { _tag: "Bulk", args: s.args, left: s.left, length } })
      }
      case "Bulk": {
        s.args.push(bytes.subarray(0, s.length))
        return s.left === 1
          ? Framing.next(START, s.args)
          : Framing.next({ _tag: "BulkHeader", args: s.args, left: s.left - 1 })
      }
    }
  }
})

/**
 * The longest line of a request (an inline command, a `*n` or `$len` header) and its bulk strings plus their two
 * bytes: the machine's frames, bounded by the server's `maxFrameLength`.
 */
const MAX_LINE = MAX_BULK + 2
/** The longest request: its lines and bulk strings together (Redis's query buffer limit is far larger). */
const MAX_REQUEST = 16 * 1024 * 1024

/** A line of a request over `MAX_LINE`: the machine's `FrameTooLong`, for the same input. */
const lineTooLong = (length: number, complete: boolean, delimiter: Terminator.Terminator) => {
  const terminator = Terminator.format(delimiter)
  const what = complete ? `a frame of ${length} bytes` : `a frame of at least ${length} bytes`
  return Framing.fail(
    new ChatError.ChatError({
      reason: new Framing.FrameTooLong({
        limit: MAX_LINE,
        terminator,
        message: `Frame too long: ${what} exceeds the limit of ${MAX_LINE} bytes (terminator ${terminator})`
      })
    })
  )
}

/** No request up to `at` (lone `\n`s, an empty line, `*0`): consumed, and the decoder asked again from there. */
const consumed = (input: Framing.Cursor, at: number): Framing.NeedMore => {
  input.offset = at
  return Framing.needMore
}

/**
 * RESP requests, decoded a whole request at a time (`Framing.decoder`): the same requests and the same errors
 * as `RespRequestsMachine` on every input, at every chunking, in one pass over the bytes instead of a frame,
 * a step and a new state for each field. Lone `\n`s, empty inline lines and `*0` are no request: they are
 * consumed on their own. What the end of input cuts short is dropped. One decoder per connection: a multibulk
 * request that spans reads goes on from its last whole argument, so one of many arguments sent in small pieces
 * costs each byte once, not its start again on every read.
 */
export const RespRequests = Framing.decoder<Command, ProtocolError | ChatError.ChatError>(() => {
  // The arguments of the request being read, as [start, length] pairs from the request's start (reused), and, for
  // one that spans reads, how far it got: its count, where its next argument starts, and the bytes it had then.
  const spans: Array<number> = []
  let count = 0
  let next = 0
  let seen = 0

  /** The bulk strings of a `*count` request starting at `start`, from `at` on, `spans` holding those before. */
  const bulks = (
    input: Framing.Cursor,
    start: number,
    at: number
  ): Command | Framing.NeedMore | Framing.Failed<ProtocolError | ChatError.ChatError> => {
    const bytes = input.bytes
    const len = bytes.length
    while (spans.length < 2 * count) {
      if (at >= len) return pause(input, start, at)
      const cr = bytes.indexOf(CR, at)
      if (cr < 0) {
        return len - at > MAX_LINE
          ? afresh(lineTooLong(len - at, false, CR_DELIMITER))
          : pause(input, start, at)
      }
      if (cr - at > MAX_LINE) return afresh(lineTooLong(cr - at, true, CR_DELIMITER))
      if (bytes[at] !== DOLLAR) return afresh(Framing.fail(notABulk(bytes, at, cr)))
      const length = countOf(bytes, at + 1, cr)
      if (length === undefined || length < 0 || length > MAX_BULK) {
        return afresh(Framing.fail(new ProtocolError("invalid bulk length")))
      }
      const value = cr + 2
      if (value + length + 2 > len) return pause(input, start, at)
      spans.push(value - start, length)
      at = value + length + 2
    }
    input.offset = at
    const args: Array<Uint8Array> = []
    for (let i = 0; i < count; i++) {
      const from = start + spans[2 * i]
      args.push(bytes.subarray(from, from + spans[2 * i + 1]))
    }
    return afresh(args)
  }

  /** `answer`, the request done with: the next starts afresh. */
  const afresh = <A>(answer: A): A => {
    count = 0
    spans.length = 0
    return answer
  }

  /** Needs more for the request at `start`, read up to `at`. */
  const pause = (input: Framing.Cursor, start: number, at: number): Framing.NeedMore => {
    next = at - start
    seen = input.bytes.length - start
    return Framing.needMore
  }

  return {
    decode: (input) => {
      const bytes = input.bytes
      const len = bytes.length
      let at = input.offset
      if (count > 0) {
        // the request paused on goes on, unless these are not its bytes (fewer than before: asked afresh)
        if (len - at >= seen) return bulks(input, at, at + next)
        afresh(undefined)
      }
      if (at >= len) return Framing.needMore
      const first = bytes[at]
      if (first === LF) {
        while (at < len && bytes[at] === LF) at++
        return consumed(input, at)
      }
      if (first !== STAR) {
        const lf = bytes.indexOf(LF, at + 1)
        if (lf < 0) return len - at - 1 > MAX_LINE ? lineTooLong(len - at - 1, false, Terminator.lf) : Framing.needMore
        if (lf - at - 1 > MAX_LINE) return lineTooLong(lf - at - 1, true, Terminator.lf)
        const args = splitArgs(bytes.subarray(at, bytes[lf - 1] === CR ? lf - 1 : lf))
        if (args === undefined) return Framing.fail(new ProtocolError("unbalanced quotes in request"))
        if (args.length === 0) return consumed(input, lf + 1)
        input.offset = lf + 1
        return args
      }
      const cr = bytes.indexOf(CR, at + 1)
      if (cr < 0) return len - at - 1 > MAX_LINE ? lineTooLong(len - at - 1, false, CR_DELIMITER) : Framing.needMore
      if (cr - at - 1 > MAX_LINE) return lineTooLong(cr - at - 1, true, CR_DELIMITER)
      const n = countOf(bytes, at + 1, cr)
      if (n === undefined || n > MAX_ARGS) return Framing.fail(new ProtocolError("invalid multibulk length"))
      // the byte after `\r`, unchecked
      if (cr + 1 >= len) return Framing.needMore
      if (n <= 0) return consumed(input, cr + 2)
      count = n
      return bulks(input, at, cr + 2)
    }
  }
})

// Replies, encoded once where they never change.
const OK = Buffer.from("+OK\r\n")
const PONG = Buffer.from("+PONG\r\n")
const NIL = Buffer.from("$-1\r\n")
const EMPTY_ARRAY = Buffer.from("*0\r\n")
const CRLF = Buffer.from("\r\n")
type Reply = ReadonlyArray<Uint8Array | string>
const bulk = (value: Uint8Array): Reply => [`$${value.length}\r\n`, value, CRLF]
const integer = (n: number | bigint) => `:${n}\r\n`
/** What `CONFIG GET` reports: an in-memory server that never persists. */
const CONFIG: Record<string, string | undefined> = { save: "", appendonly: "no" }
/** An error reply; like Redis, `\r` and `\n` from user input become spaces. Latin-1 keeps user bytes as sent. */
const error = (message: string): Uint8Array => Buffer.from(`-${message.replace(/[\r\n]/g, " ")}\r\n`, "latin1")
const NOT_AN_INTEGER = error("ERR value is not an integer or out of range")
const SYNTAX_ERROR = error("ERR syntax error")

/** An entry of the keyspace; `expiresAt` in epoch milliseconds. */
interface Entry {
  readonly value: Uint8Array
  readonly expiresAt: number | undefined
}

/** The keyspace, shared by every connection of one server. Expired keys are dropped when touched. */
export class Store {
  private readonly entries = new Map<string, Entry>()

  lookup(key: string, now: number): Entry | undefined {
    const entry = this.entries.get(key)
    if (entry?.expiresAt !== undefined && entry.expiresAt <= now) {
      this.entries.delete(key)
      return undefined
    }
    return entry
  }

  get(key: string, now: number): Uint8Array | undefined {
    return this.lookup(key, now)?.value
  }

  set(key: string, value: Uint8Array, expiresAt: number | undefined): void {
    this.entries.set(key, { value, expiresAt })
  }

  delete(key: string, now: number): boolean {
    return this.lookup(key, now) !== undefined && this.entries.delete(key)
  }

  clear(): void {
    this.entries.clear()
  }
}

const keyOf = latin1
/** Values outlive the input chunk they arrived in: copy them. */
const own = (arg: Uint8Array): Uint8Array => Uint8Array.prototype.slice.call(arg)
/** An argument as C code sees it: up to its first NUL. Redis compares options and prints names this way. */
const cString = (arg: Uint8Array) => {
  const nul = arg.indexOf(0)
  return latin1(nul < 0 ? arg : arg.subarray(0, nul))
}
const optionOf = (arg: Uint8Array) => cString(arg).toLowerCase()

/** SET's options, as Redis 7.0 accepts them: NX | XX, GET, and one of KEEPTTL, EX, PX, EXAT, PXAT. */
interface SetOptions {
  readonly nx: boolean
  readonly xx: boolean
  readonly get: boolean
  readonly keepTtl: boolean
  readonly expiry: { readonly unit: "ex" | "px" | "exat" | "pxat"; readonly amount: Uint8Array } | undefined
}

/** SET's options after `key value`, or the syntax error. Repeating the same expiry unit is allowed, as in Redis. */
const setOptionsOf = (args: Command): SetOptions | Uint8Array => {
  let o: SetOptions = { nx: false, xx: false, get: false, keepTtl: false, expiry: undefined }
  for (let i = 3; i < args.length; i++) {
    const option = optionOf(args[i])
    if (option === "nx" && !o.xx) o = { ...o, nx: true }
    else if (option === "xx" && !o.nx) o = { ...o, xx: true }
    else if (option === "get") o = { ...o, get: true }
    else if (option === "keepttl" && o.expiry === undefined) o = { ...o, keepTtl: true }
    else if (
      (option === "ex" || option === "px" || option === "exat" || option === "pxat") && !o.keepTtl &&
      (o.expiry === undefined || o.expiry.unit === option) && i + 1 < args.length
    ) o = { ...o, expiry: { unit: option, amount: args[++i] } }
    else return SYNTAX_ERROR
  }
  return o
}

/** The absolute expiry in epoch milliseconds, or the error Redis gives (checked after the syntax). */
const expiresAtOf = (expiry: NonNullable<SetOptions["expiry"]>, now: number): number | Uint8Array => {
  const amount = int64Of(expiry.amount)
  if (amount === undefined) return NOT_AN_INTEGER
  const seconds = expiry.unit === "ex" || expiry.unit === "exat"
  const relative = expiry.unit === "ex" || expiry.unit === "px"
  const invalid = error("ERR invalid expire time in 'set' command")
  if (amount <= 0n || (seconds && amount > INT64_MAX / 1000n)) return invalid
  const at = (seconds ? amount * 1000n : amount) + (relative ? BigInt(now) : 0n)
  // Redis's int64 addition wraps past the maximum, and a negative expiry is refused
  return at > INT64_MAX ? invalid : Number(at)
}

const set = (store: Store, args: Command, now: number): Reply => {
  const options = setOptionsOf(args)
  if (options instanceof Uint8Array) return [options]
  const expiresAt = options.expiry === undefined ? undefined : expiresAtOf(options.expiry, now)
  if (expiresAt instanceof Uint8Array) return [expiresAt]
  const key = keyOf(args[1])
  const old = store.lookup(key, now)
  const reply = options.get ? (old === undefined ? [NIL] : bulk(old.value)) : [OK]
  if ((options.nx && old !== undefined) || (options.xx && old === undefined)) return options.get ? reply : [NIL]
  store.set(key, own(args[2]), options.keepTtl ? old?.expiresAt : expiresAt)
  return reply
}

/** INCR, DECR, INCRBY, DECRBY: int64 arithmetic on a canonical integer value, keeping the key's TTL. */
const incrementBy = (store: Store, key: string, by: bigint, now: number): Reply => {
  const entry = store.lookup(key, now)
  const current = entry === undefined ? 0n : int64Of(entry.value)
  if (current === undefined) return [NOT_AN_INTEGER]
  const next = current + by
  if (next < INT64_MIN || next > INT64_MAX) return [error("ERR increment or decrement would overflow")]
  store.set(key, Buffer.from(String(next)), entry?.expiresAt)
  return [integer(next)]
}

/** The increment argument of INCRBY and DECRBY, checked before the value is. */
const incrementOf = (arg: Uint8Array, negate: boolean): bigint | Uint8Array => {
  const by = int64Of(arg)
  if (by === undefined) return NOT_AN_INTEGER
  if (negate && by === INT64_MIN) return error("ERR decrement would overflow")
  return negate ? -by : by
}

const count = (args: Command, has: (key: string) => boolean): Reply => {
  let n = 0
  for (let i = 1; i < args.length; i++) if (has(keyOf(args[i]))) n++
  return [integer(n)]
}

/** A command of the table: Redis's arity (`n` exactly, `-n` at least) and what it does. */
interface Spec {
  readonly arity: number
  readonly run: (store: Store, args: Command, now: number) => Reply
}

const COMMANDS = new Map<string, Spec>([
  ["ping", {
    arity: -1,
    run: (_, args) => args.length === 1 ? [PONG] : args.length === 2 ? bulk(args[1]) : [wrongArity("ping")]
  }],
  ["echo", { arity: 2, run: (_, args) => bulk(args[1]) }],
  ["get", {
    arity: 2,
    run: (store, args, now) => {
      const value = store.get(keyOf(args[1]), now)
      return value === undefined ? [NIL] : bulk(value)
    }
  }],
  ["set", { arity: -3, run: set }],
  ["del", { arity: -2, run: (store, args, now) => count(args, (key) => store.delete(key, now)) }],
  ["exists", { arity: -2, run: (store, args, now) => count(args, (key) => store.lookup(key, now) !== undefined) }],
  ["incr", { arity: 2, run: (store, args, now) => incrementBy(store, keyOf(args[1]), 1n, now) }],
  ["decr", { arity: 2, run: (store, args, now) => incrementBy(store, keyOf(args[1]), -1n, now) }],
  ["incrby", { arity: 3, run: (store, args, now) => byArgument(store, args, now, false) }],
  ["decrby", { arity: 3, run: (store, args, now) => byArgument(store, args, now, true) }],
  ["mget", {
    arity: -2,
    run: (store, args, now) => {
      const out: Array<Uint8Array | string> = [`*${args.length - 1}\r\n`]
      for (let i = 1; i < args.length; i++) {
        const value = store.get(keyOf(args[i]), now)
        if (value === undefined) out.push(NIL)
        else out.push(...bulk(value))
      }
      return out
    }
  }],
  ["flushall", {
    arity: -1,
    run: (store, args) => {
      const mode = args.length === 2 ? optionOf(args[1]) : undefined
      if (args.length > 2 || (mode !== undefined && mode !== "sync" && mode !== "async")) return [SYNTAX_ERROR]
      store.clear()
      return [OK]
    }
  }],
  // Probes sent by redis-cli and redis-benchmark on start; answered just enough for them.
  ["config", {
    arity: -2,
    run: (_, args) => {
      if (optionOf(args[1]) !== "get" || args.length !== 3) return [EMPTY_ARRAY]
      const parameter = optionOf(args[2])
      const value = CONFIG[parameter]
      return value === undefined
        ? [EMPTY_ARRAY]
        : ["*2\r\n", ...bulk(Buffer.from(parameter)), ...bulk(Buffer.from(value))]
    }
  }],
  ["command", { arity: -1, run: () => [EMPTY_ARRAY] }]
])

function byArgument(store: Store, args: Command, now: number, negate: boolean): Reply {
  const by = incrementOf(args[2], negate)
  return by instanceof Uint8Array ? [by] : incrementBy(store, keyOf(args[1]), by, now)
}

function wrongArity(name: string): Uint8Array {
  return error(`ERR wrong number of arguments for '${name}' command`)
}

/** Redis's reply to an unknown command: the name and the first arguments, quoted, each cut to 128 bytes in all. */
const unknownCommand = (args: Command): Uint8Array => {
  let rest = ""
  for (let i = 1; i < args.length && rest.length < 128; i++) {
    rest += `'${cString(args[i]).slice(0, 128 - rest.length)}' `
  }
  return error(`ERR unknown command '${cString(args[0]).slice(0, 128)}', with args beginning with: ${rest}`)
}

/**
 * Executes one command against `store` at `now` (epoch milliseconds); what it returns is pushed as the reply.
 * @example
 * ```ts
 * const store = new Store()
 * execute(store, ["SET", "k", "v"].map((s) => Buffer.from(s)), Date.now()) // [+OK\r\n]
 * ```
 */
export const execute = (store: Store, args: Command, now: number): Reply => {
  const name = keyOf(args[0]).toLowerCase()
  const spec = COMMANDS.get(name)
  if (spec === undefined) return [unknownCommand(args)]
  const arityOk = spec.arity > 0 ? args.length === spec.arity : args.length >= -spec.arity
  return arityOk ? spec.run(store, args, now) : [wrongArity(name)]
}

/**
 * A RESP server over `store`. Commands come in batches, one per read (`Protocol.forEachBatch`): a pipelined
 * batch is executed with one clock reading and answered with one push. A protocol error is answered, then the
 * connection closes.
 */
export const Redis = (store: Store) =>
  Protocol.forEachBatch(
    RespRequests,
    // the connection's handle and the clock, taken once
    Effect.map(Effect.all([Chat.Chat, Clock.Clock]), ([chat, clock]) => (commands) => {
      const now = clock.currentTimeMillisUnsafe()
      const replies: Array<Uint8Array | string> = []
      for (let i = 0; i < commands.length; i++) {
        const reply = execute(store, commands[i], now)
        for (let j = 0; j < reply.length; j++) replies.push(reply[j])
      }
      return chat.push(...replies)
    })
  ).pipe(
    Protocol.mapHandler(Effect.catchIf(
      (e): e is ProtocolError => e instanceof ProtocolError,
      (e) => Chat.push(error(`ERR Protocol error: ${e.message}`))
    ))
  )

/**
 * Requests of up to 16 MiB, whose lines and values `RespRequests` bounds to 1 MiB each; like Redis (timeout 0),
 * no idle timeout: idle clients are normal.
 */
export const serverOptions: ChatServer.Options = { maxFrameLength: MAX_REQUEST, idleTimeout: Duration.infinity }

/** The options `RespRequestsMachine` is run with: its frames, the lines and values, bounded to 1 MiB each. */
export const machineOptions: ChatServer.Options = { ...serverOptions, maxFrameLength: MAX_LINE }

/** Runs the server on `host:port`. */
export const run = (options: Shared.ServerFlags) =>
  Shared.serveTcp(Redis(new Store()), {
    ...options,
    name: "redis",
    tryIt: (host, port, tls) =>
      tls === undefined
        ? [
          `redis-cli -h ${host} -p ${port} set greeting hello`,
          `redis-benchmark -h ${host} -p ${port} -t ping,set,get,incr -q`
        ]
        : [
          `redis-cli --tls --cacert ${tls.cert} -h ${host} -p ${port} set greeting hello   (if self-signed; else your CA)`
        ],
    server: Shared.withLimits(serverOptions, options)
  })

/** `npm start -- redis [--host H] [--port N] [--tls-key F --tls-cert F]` */
export const command = Command.make("redis", Shared.serverFlags(6380, serverOptions), run).pipe(
  Shared.withTelemetry,
  Command.withDescription(
    "a mini Redis (RESP2): PING ECHO GET SET DEL EXISTS INCR DECR INCRBY DECRBY MGET FLUSHALL, pipelining"
  )
)

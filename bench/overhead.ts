/**
 * The framework's own cost per read, without the kernel: a protocol server of `bench/servers.ts` and the raw
 * `node:net`-style handler it is compared with, each on the same in-process Node Duplex streams (writes
 * discarded, reads pushed in a loop), so that only JavaScript is measured. A profile of this script shows the
 * framework's hot path undiluted by syscalls.
 *
 * - `OVERHEAD_PROTOCOL=lines` (default): the line echo, `OVERHEAD_LINES` lines of 64 bytes per read (16; 1 is
 *   request/response, where per-read costs dominate), against the raw splitter.
 * - `OVERHEAD_PROTOCOL=redis`: the `redis` example, `OVERHEAD_LINES` `SET` commands per read, against the raw
 *   RESP server of `bench/peers/raw-redis.ts`.
 * - `OVERHEAD_PROTOCOL=http`: the `http11` example, `OVERHEAD_LINES` GET requests (as wrk sends them) per read,
 *   against the raw server of `bench/peers/raw-http.ts`.
 *
 * Each round also measures the design's floor: the raw handler run in a fiber per connection that every read
 * resumes (`bench/peers/effect-fiber.ts`), what the design costs before the framework does anything.
 *
 * Run: `npm run bench:overhead` (or `node --cpu-prof ... bench/overhead.ts`). Prints µs per read for each, and
 * the ratios. `OVERHEAD_ONLY_OURS=1` skips the raw handlers (for a profile of ours alone).
 */
import { Duration, Effect } from "effect"
import { ChatServer, Listener, type Protocol } from "effect-asynchat"
import { Buffer } from "node:buffer"
import { Duplex } from "node:stream"
import { Http11 } from "../examples/http11.ts"
import { Redis, Store } from "../examples/redis.ts"
import * as EffectFiber from "./peers/effect-fiber.ts"
import * as RawHttp from "./peers/raw-http.ts"
import { EchoLines } from "./servers/echo-lines.ts"

const CONNECTIONS = 20
const READS = 40_000
const ROUNDS = 5
const LINES = Number(process.env.OVERHEAD_LINES ?? 16)
const PROTOCOL = process.env.OVERHEAD_PROTOCOL ?? "lines"

const lineBlock = () => {
  const block = Buffer.alloc(LINES * 64, "x")
  for (let i = 1; i <= LINES; i++) block[i * 64 - 1] = 10
  return block
}
const setCommand = "*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000042\r\n$3\r\nxxx\r\n"
const getRequest = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n"
/** Each protocol (its raw handler is `EffectFiber.readers`' of the same name): what is read, what answers it, ours. */
const subjects = {
  lines: { block: lineBlock, answerBytes: () => LINES * 64, ours: () => EchoLines },
  redis: {
    block: () => Buffer.from(setCommand.repeat(LINES)),
    answerBytes: () => "+OK\r\n".length * LINES,
    ours: () => Redis(new Store())
  },
  http: {
    block: () => Buffer.from(getRequest.repeat(LINES)),
    // the answers carry a Date header of fixed length
    answerBytes: () => RawHttp.answers(1).length * LINES,
    ours: () => Http11
  }
} as const
if (!(PROTOCOL in subjects)) throw new Error(`OVERHEAD_PROTOCOL must be one of ${Object.keys(subjects).join(", ")}`)
const subject = subjects[PROTOCOL as keyof typeof subjects]
const rawReader = EffectFiber.readers[PROTOCOL as keyof typeof subjects]
const block = subject.block()

/** A Duplex whose writes are taken at once and whose reads we push. */
const fakeSocket = () => {
  let written = 0
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      written += chunk.length
      callback()
    }
  })
  return { stream, written: () => written }
}

/** Pushes READS blocks into every stream, round-robin, yielding to the event loop between rounds. */
const drive = async (streams: ReadonlyArray<Duplex>) => {
  const start = process.cpuUsage()
  for (let r = 0; r < READS; r++) {
    for (const s of streams) s.push(block)
    if (r % 64 === 63) await new Promise((resolve) => setImmediate(resolve))
  }
  await new Promise((resolve) => setImmediate(resolve))
  const used = process.cpuUsage(start)
  return (used.user + used.system) / (READS * streams.length)
}

/** The raw handler on each stream, by itself or (`inFiber`) in a fiber per connection, as the design has it. */
const raw = async (inFiber: boolean) => {
  const sockets = Array.from({ length: CONNECTIONS }, fakeSocket)
  for (const s of sockets) {
    if (inFiber) EffectFiber.serve(s.stream, rawReader)
    else s.stream.on("data", rawReader(s.stream))
  }
  const us = await drive(sockets.map((s) => s.stream))
  for (const s of sockets) s.stream.destroy()
  return us
}

const ours = (protocol: Protocol.Protocol<unknown, never>) =>
  Effect.scoped(Effect.gen(function*() {
    const sockets = Array.from({ length: CONNECTIONS }, fakeSocket)
    const listener = Listener.Listener.of({
      address: { _tag: "Memory", name: "overhead" },
      accept: (onConnection) =>
        Effect.callback<never>(() => {
          for (const s of sockets) {
            onConnection(Listener.fromStream(s.stream, {
              localAddress: { _tag: "Memory", name: "overhead" },
              remoteAddress: { _tag: "Memory", name: "peer" }
            }))
          }
        }),
      stopAccepting: Effect.void
    })
    yield* ChatServer.make(protocol, {
      idleTimeout: Duration.infinity,
      frameTimeout: Duration.infinity,
      shutdownTimeout: 0
    }).pipe(Effect.provideService(Listener.Listener, listener))
    yield* Effect.sleep("10 millis")
    const us = yield* Effect.promise(() => drive(sockets.map((s) => s.stream)))
    const expected = READS * subject.answerBytes()
    for (const s of sockets) {
      if (s.written() !== expected) throw new Error(`answered ${s.written()} of ${expected} bytes`)
    }
    return us
  }))

const protocol = subject.ours() as Protocol.Protocol<unknown, never>
const onlyOurs = process.env.OVERHEAD_ONLY_OURS !== undefined && process.env.OVERHEAD_ONLY_OURS !== ""
for (let round = 1; round <= ROUNDS; round++) {
  const o = await Effect.runPromise(ours(protocol))
  if (onlyOurs) {
    console.log(`round ${round}: ours ${o.toFixed(2)} µs/read`)
    continue
  }
  const r = await raw(false)
  const f = await raw(true)
  console.log(
    `round ${round}: ours ${o.toFixed(2)} µs/read, fiber floor ${f.toFixed(2)}, raw ${r.toFixed(2)}; ` +
      `ours/raw ${(o / r).toFixed(2)}, ours/fiber floor ${(o / f).toFixed(2)}`
  )
}

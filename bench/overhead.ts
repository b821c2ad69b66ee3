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
 *
 * Run: `npm run bench:overhead` (or `node --cpu-prof ... bench/overhead.ts`). Prints µs per read for each, and
 * the ratio. `OVERHEAD_ONLY_OURS=1` skips the raw handler (for a profile of ours alone).
 */
import { Duration, Effect } from "effect"
import { ChatServer, Listener, type Protocol } from "effect-asynchat"
import { Buffer } from "node:buffer"
import { Duplex } from "node:stream"
import { Redis, Store } from "../examples/redis.ts"
import * as RawLineEcho from "./peers/raw-line-echo.ts"
import * as RawRedis from "./peers/raw-redis.ts"
import { EchoLines } from "./servers/echo-lines.ts"

const CONNECTIONS = 20
const READS = 40_000
const ROUNDS = 5
const LINES = Number(process.env.OVERHEAD_LINES ?? 16)
const REDIS = process.env.OVERHEAD_PROTOCOL === "redis"

const lineBlock = () => {
  const block = Buffer.alloc(LINES * 64, "x")
  for (let i = 1; i <= LINES; i++) block[i * 64 - 1] = 10
  return block
}
const setCommand = "*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000042\r\n$3\r\nxxx\r\n"
const block = REDIS ? Buffer.from(setCommand.repeat(LINES)) : lineBlock()
/** Bytes echoed per read by the line echo; the redis answers are `+OK\r\n` each. */
const answerBytes = REDIS ? 5 * LINES : block.length

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

const raw = async () => {
  const sockets = Array.from({ length: CONNECTIONS }, fakeSocket)
  for (const s of sockets) (REDIS ? RawRedis.serve : RawLineEcho.serve)(s.stream)
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
            onConnection({
              socket: undefined as never,
              stream: s.stream,
              localAddress: { _tag: "Memory", name: "overhead" },
              remoteAddress: { _tag: "Memory", name: "peer" },
              onClosed: Listener.onClosedOf(s.stream)
            })
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
    const expected = READS * answerBytes
    for (const s of sockets) {
      if (s.written() !== expected) throw new Error(`answered ${s.written()} of ${expected} bytes`)
    }
    return us
  }))

const protocol = (REDIS ? Redis(new Store()) : EchoLines) as Protocol.Protocol<unknown, never>
for (let round = 1; round <= ROUNDS; round++) {
  const r = process.env.OVERHEAD_ONLY_OURS ? 1 : await raw()
  const o = await Effect.runPromise(ours(protocol))
  console.log(`round ${round}: ours ${o.toFixed(2)} µs/read, raw ${r.toFixed(2)} µs/read, ratio ${(o / r).toFixed(2)}`)
}

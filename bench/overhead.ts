/**
 * The framework's own cost per read, without the kernel: the line-echo server of `bench/servers.ts` and the raw
 * `node:net`-style splitter it is compared with, each on the same in-process Node Duplex streams (writes
 * discarded, reads pushed in a loop), so that only JavaScript is measured. A profile of this script shows the
 * framework's hot path undiluted by syscalls.
 *
 * Run: `npm run bench:overhead` (or `node --cpu-prof ... bench/overhead.ts`). Prints µs per read (16 lines of
 * 64 bytes; `OVERHEAD_LINES=1` for one) for each, and the ratio.
 */
import { Duration, Effect } from "effect"
import { ChatServer, Listener } from "effect-asynchat"
import { Buffer } from "node:buffer"
import { Duplex } from "node:stream"
import { EchoLines } from "./servers/echo-lines.ts"

const CONNECTIONS = 20
const READS = 40_000
const ROUNDS = 5

// Lines per read: 16 as in the line-echo section; 1 is request/response, where per-read costs dominate.
const LINES = Number(process.env.OVERHEAD_LINES ?? 16)
const block = Buffer.alloc(LINES * 64, "x")
for (let i = 1; i <= LINES; i++) block[i * 64 - 1] = 10

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

const rawEcho = (stream: Duplex) => {
  const NL = Buffer.from("\n")
  let partial: Buffer | undefined
  stream.on("data", (chunk: Buffer) => {
    const out: Array<Buffer> = []
    let pos = 0
    for (let k = chunk.indexOf(10); k >= 0; k = chunk.indexOf(10, pos)) {
      if (partial !== undefined) {
        out.push(Buffer.concat([partial, chunk.subarray(0, k)]), NL)
        partial = undefined
      } else out.push(chunk.subarray(pos, k), NL)
      pos = k + 1
    }
    if (pos < chunk.length) partial = Buffer.from(chunk.subarray(pos))
    if (out.length > 0) stream.write(Buffer.concat(out))
  })
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
  for (const s of sockets) rawEcho(s.stream)
  const us = await drive(sockets.map((s) => s.stream))
  for (const s of sockets) s.stream.destroy()
  return us
}

const ours = () =>
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
    yield* ChatServer.make(EchoLines, {
      idleTimeout: Duration.infinity,
      frameTimeout: Duration.infinity,
      shutdownTimeout: 0
    }).pipe(
      Effect.provideService(Listener.Listener, listener)
    )
    yield* Effect.sleep("10 millis")
    const us = yield* Effect.promise(() => drive(sockets.map((s) => s.stream)))
    const expected = READS * block.length
    for (const s of sockets) if (s.written() !== expected) throw new Error(`echoed ${s.written()} of ${expected} bytes`)
    return us
  }))

for (let round = 1; round <= ROUNDS; round++) {
  const r = process.env.OVERHEAD_ONLY_OURS ? 1 : await raw()
  const o = await Effect.runPromise(ours())
  console.log(`round ${round}: ours ${o.toFixed(2)} µs/read, raw ${r.toFixed(2)} µs/read, ratio ${(o / r).toFixed(2)}`)
}

/**
 * What an idle connection costs the heap, against the floor of a raw `node:net` server holding the same
 * sockets in the same process: the guard of the memory tricks listed in internal/connection.ts (classes over
 * closures, functions made on first use, continuations that capture only the connection, a span only with a
 * tracer). A change that makes every idle connection hold more shows here, not only in `npm run bench`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import * as Net from "node:net"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import * as Chat from "../src/Chat.ts"
import * as ChatServer from "../src/ChatServer.ts"
import * as Listener from "../src/Listener.ts"
import * as Protocol from "../src/Protocol.ts"
import * as Terminator from "../src/Terminator.ts"

V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void

const CONNECTIONS = 1000

/** What one of our idle connections may hold beyond the raw floor: measured 5.45 KiB, with room for noise. */
const BUDGET_KIB = 6.3

/**
 * Heap in use after full collections: what is retained, not what is garbage yet. Each side is measured as the
 * heap with its connections open less the heap once they closed, so what the process holds anyway cancels out.
 */
const retained = (): number => {
  for (let i = 0; i < 3; i++) gc()
  return process.memoryUsage().heapUsed
}

/** Opens `n` idle clients to `port` and resolves once `ready` says the server holds them all. */
const openIdle = (port: number, n: number, ready: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    const sockets = Array.from(
      { length: n },
      () => Net.createConnection({ host: "127.0.0.1", port }).on("error", ignore)
    )
    yield* until(ready)
    return sockets
  })

const ignore = () => {}

const until = (ready: Effect.Effect<boolean>) =>
  Effect.andThen(Effect.sleep("20 millis"), ready).pipe(Effect.repeat({ until: (done) => done }))

const closeAll = (sockets: ReadonlyArray<Net.Socket>) =>
  Effect.promise(() =>
    Promise.all(sockets.map((socket) => new Promise<void>((resolve) => socket.destroy().once("close", resolve))))
  )

/** Heap bytes per idle connection over a raw `node:net` server: the floor, with the clients' share in it. */
const rawPerConnection = Effect.gen(function*() {
  const held: Array<Net.Socket> = []
  const server = Net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (conn) => {
    conn.on("error", () => {})
    conn.on("data", () => {})
    held.push(conn)
  })
  yield* Effect.promise(() => new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve)))
  const port = (server.address() as Net.AddressInfo).port
  const clients = yield* openIdle(port, CONNECTIONS, Effect.sync(() => held.length === CONNECTIONS))
  const open = retained()
  yield* closeAll(clients)
  for (const conn of held.splice(0)) conn.destroy()
  yield* Effect.sleep("300 millis")
  const per = (open - retained()) / CONNECTIONS
  yield* Effect.promise(() => new Promise((resolve) => server.close(resolve)))
  return per
})

const Echo = Protocol.make(Terminator.lf, (lines) => Stream.runForEach(lines, (line) => Chat.push(line.bytes, "\n")))

/** Heap bytes per idle connection of ours, in a scope of its own: the server is gone after. */
const oursPerConnection = Effect.scoped(Effect.gen(function*() {
  const listener = yield* Listener.makeTcp({ host: "127.0.0.1", port: 0 })
  const server = yield* ChatServer.make(Echo, { shutdownTimeout: 0 }).pipe(
    Effect.provideService(Listener.Listener, listener)
  )
  const port = listener.address._tag === "Inet" ? listener.address.port : 0
  const clients = yield* openIdle(port, CONNECTIONS, Effect.map(server.count, (n) => n === CONNECTIONS))
  const open = retained()
  yield* closeAll(clients)
  yield* until(Effect.map(server.count, (n) => n === 0))
  yield* Effect.sleep("300 millis")
  return (open - retained()) / CONNECTIONS
}))

describe("memory of an idle connection", () => {
  it.live(
    `${CONNECTIONS} idle connections hold at most a budget of heap each beyond raw node:net's`,
    () =>
      Effect.gen(function*() {
        // a first round warms up code and caches (shared, not per connection); the second is measured
        yield* rawPerConnection
        yield* oursPerConnection
        const raw = yield* rawPerConnection
        const ours = yield* oursPerConnection
        const overKiB = (ours - raw) / 1024
        console.log(
          `idle connection heap: ours ${(ours / 1024).toFixed(2)} KiB, raw node:net ${(raw / 1024).toFixed(2)} KiB`
        )
        expect(overKiB).toBeLessThan(BUDGET_KIB)
      }),
    60_000
  )
})

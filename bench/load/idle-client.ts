/**
 * The load for the memory section of `bench/servers.ts`: opens COUNT connections to 127.0.0.1:PORT, at most
 * PARALLEL handshakes at a time (so the accept queue never overflows into SYN retries), sends nothing, and
 * holds them open. Prints "connected COUNT" once all are up, then waits until killed, or DEADLINE_MS. Needs
 * `ulimit -n` above COUNT.
 *
 * Run: node bench/load/idle-client.ts PORT [COUNT=10000] [PARALLEL=200] [DEADLINE_MS=120000]
 */
import { connect, type Socket } from "node:net"

const [port, count = 10_000, parallel = 200, deadline = 120_000] = process.argv.slice(2).map(Number)
if (!(port > 0)) {
  console.error("usage: node bench/load/idle-client.ts PORT [COUNT] [PARALLEL] [DEADLINE_MS]")
  process.exit(2)
}
setTimeout(() => {
  console.error(`idle-client: deadline of ${deadline} ms reached`)
  process.exit(1)
}, deadline).unref()

const sockets: Array<Socket> = []
let started = 0
let connected = 0

const next = (): void => {
  if (started === count) return
  const i = started++
  const socket = connect({ port, host: "127.0.0.1" }, () => {
    if (++connected === count) console.log(`connected ${count}`)
    next()
  })
  socket.on("error", (e) => {
    console.error(`idle-client: connection ${i}: ${e.message}`)
    process.exit(1)
  })
  socket.on("close", () => {
    console.error(`idle-client: connection ${i} closed by the server`)
    process.exit(1)
  })
  sockets.push(socket)
}
for (let i = 0; i < Math.min(parallel, count); i++) next()
// Hold the sockets (and the process) until killed.
setInterval(() => {}, 60_000)

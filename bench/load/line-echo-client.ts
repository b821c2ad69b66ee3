/**
 * The load for the line-echo section of `bench/servers.ts`: CONNECTIONS connections, each keeping DEPTH lines of
 * LINE bytes (`\n` included) in flight until it has had LINES lines echoed. Each read's echoed lines are counted
 * and replaced by as many new ones, in one write. Prints one JSON line: lines and bytes echoed, milliseconds.
 * Exits 1 if a connection fails, closes early or the echo is wrong in length, or after DEADLINE_MS.
 *
 * Run: node bench/load/line-echo-client.ts PORT [CONNECTIONS=20] [DEPTH=16] [LINE=64] [LINES=100000] [DEADLINE_MS=60000]
 */
import { Buffer } from "node:buffer"
import { connect } from "node:net"
import { performance } from "node:perf_hooks"

const [port, connections = 20, depth = 16, lineBytes = 64, lines = 100_000, deadline = 60_000] = process.argv
  .slice(2)
  .map(Number)
if (!(port > 0) || lineBytes < 2) {
  console.error("usage: node bench/load/line-echo-client.ts PORT [CONNECTIONS] [DEPTH] [LINE] [LINES] [DEADLINE_MS]")
  process.exit(2)
}

// DEPTH lines, ready to send as any prefix of whole lines.
const block = Buffer.alloc(depth * lineBytes, "x")
for (let i = 1; i <= depth; i++) block[i * lineBytes - 1] = 10

const fail = (message: string): never => {
  console.error(`line-echo-client: ${message}`)
  process.exit(1)
}
setTimeout(() => fail(`not done after ${deadline} ms`), deadline).unref()

let open = connections
let echoed = 0
let bytes = 0
const start = performance.now()

for (let c = 0; c < connections; c++) {
  let sent = Math.min(depth, lines)
  let received = 0
  let receivedBytes = 0
  const socket = connect(
    { port, host: "127.0.0.1", noDelay: true },
    () => socket.write(block.subarray(0, sent * lineBytes))
  )
  socket.on("data", (chunk: Buffer) => {
    let n = 0
    for (let k = chunk.indexOf(10); k >= 0; k = chunk.indexOf(10, k + 1)) n++
    received += n
    receivedBytes += chunk.length
    const more = Math.min(n, lines - sent)
    if (more > 0) {
      sent += more
      socket.write(block.subarray(0, more * lineBytes))
    }
    if (received === lines) {
      if (receivedBytes !== lines * lineBytes) fail(`${receivedBytes} bytes echoed for ${lines} lines`)
      echoed += received
      bytes += receivedBytes
      socket.end()
      if (--open === 0) {
        console.log(JSON.stringify({ lines: echoed, bytes, ms: performance.now() - start }))
        process.exit(0)
      }
    }
  })
  socket.on("error", (e) => fail(`connection ${c}: ${e.message}`))
  socket.on("close", () => {
    if (received < lines) fail(`connection ${c} closed after ${received} of ${lines} lines`)
  })
}

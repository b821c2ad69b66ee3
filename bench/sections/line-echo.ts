/**
 * The line-echo section of `bench/servers.ts`: bench/servers/echo-lines.ts against a raw node:net splitter and
 * CPython's asynchat, each connection keeping a number of 64-byte lines in flight (bench/load/line-echo-client.ts).
 */
import { execFileSync } from "node:child_process"
import { addRow, alternate } from "../harness/measure.ts"
import { onPath } from "../harness/prerequisites.ts"
import { fiberArgv, NODE, ours, runLoad, type Server, type Subject, withServers } from "../harness/processes.ts"
import { FIBER_FLOOR, listCommands, NODE_FLOOR, skipped } from "../harness/results.ts"

const ECHO = { connections: 20, depth: 16, line: 64, linesPerConnection: 150_000 }
const ECHO_LINES = "bench/servers/echo-lines.ts"

/** The line-echo servers: measured busy here, and idle by the memory section. */
export const LINE_ECHO = {
  ours: { name: "ours (echo-lines)", role: "ours", argv: ours(ECHO_LINES, "PORT") },
  framed: {
    name: "ours (echo-lines, frame timeout)",
    role: "ours with its frame timeout",
    argv: ours(ECHO_LINES, "PORT", "--frame-timeout")
  },
  raw: { name: "raw node:net (echo)", role: "peer", argv: [NODE, "bench/peers/raw-line-echo.ts", "PORT"] },
  fiber: { name: "fiber + Scope (echo)", role: "the design's floor", argv: fiberArgv("lines") }
} satisfies Record<string, Subject>

const ASYNCHAT: Subject = {
  name: "asynchat",
  role: "peer",
  argv: ["python3", "bench/peers/asynchat_line_echo.py", "PORT"]
}

const hasAsynchat = (): boolean => {
  if (!onPath("python3")) return false
  try {
    execFileSync("python3", ["-W", "ignore", "-c", "import asynchat, asyncore"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const client = (lines: number) => [
  NODE,
  "bench/load/line-echo-client.ts",
  "PORT",
  ...[ECHO.connections, ECHO.depth, ECHO.line, lines, 60_000].map(String)
]

/** Lines echoed by one client run of `lines` per connection against `server`, every one of them. */
const run = async (server: Server, lines: number) => {
  const out = await runLoad(server, client(lines), 90_000)
  const result = JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as { lines?: number }
  if (result.lines !== ECHO.connections * lines) throw new Error(`line-echo-client against ${server.name}:\n${out}`)
  return result.lines
}

export const measure = async () => {
  const { connections, depth, line, linesPerConnection } = ECHO
  console.log(`\nline echo: ${connections} connections x ${depth} lines of ${line} B in flight`)
  const python = hasAsynchat()
  if (!python) {
    skipped("line echo: asynchat skipped, python3 with asynchat (3.11 or older) not found (apt-get install python3)")
  }
  const subjects = [LINE_ECHO.ours, LINE_ECHO.framed, LINE_ECHO.raw, LINE_ECHO.fiber, ...(python ? [ASYNCHAT] : [])]
  listCommands("line echo", subjects, [{ argv: client(linesPerConnection) }])
  await withServers(subjects, async (servers) => {
    const [o, f, r, e, p] = await alternate(
      servers,
      (server) => run(server, linesPerConnection),
      (server) => run(server, linesPerConnection / 10)
    )
    const fields = { section: "line echo", workload: `${connections} conns x ${depth} in flight`, unit: "µs/line" }
    addRow({ ...fields, ours: "ours", peer: NODE_FLOOR, target: 1.12 }, o, r, 1e6)
    if (p !== undefined) addRow({ ...fields, ours: "ours", peer: "asynchat", target: undefined }, o, p, 1e6)
    addRow({ ...fields, ours: "ours, frame timeout", peer: NODE_FLOOR, target: undefined }, f, r, 1e6)
    addRow({ ...fields, ours: FIBER_FLOOR, peer: NODE_FLOOR, target: undefined }, e, r, 1e6)
    if (p !== undefined) addRow({ ...fields, ours: NODE_FLOOR, peer: "asynchat", target: undefined }, r, p, 1e6)
    if (p !== undefined) addRow({ ...fields, ours: FIBER_FLOOR, peer: "asynchat", target: undefined }, e, p, 1e6)
  })
}

/**
 * Servers against their peers: the server process's CPU time per operation (utime + stime from
 * /proc/PID/stat), ours and the peer's side by side in one run, alternating, several rounds, median of the
 * per-round ratios ours/peer (lower is better). On a 2-core machine client and server share the cores, so
 * requests per second would measure the machine; CPU per operation measures the server.
 *
 * 1. redis: examples/redis.ts vs redis-server 7, under redis-benchmark (-P 1 and -P 16).
 * 2. http11: examples/http11.ts vs a node:http hello world under wrk.
 * 3. line echo: bench/servers/echo-lines.ts vs a raw node:net splitter and CPython's asynchat, 20 connections
 *    with 16 lines of 64 bytes in flight each (bench/load/line-echo-client.ts).
 * 4. memory: server RSS per idle connection, 10,000 held open (bench/load/idle-client.ts), ours vs raw node:net;
 *    both also with V8's young generation bounded (`--max-semi-space-size=4`), as such a deployment would run.
 *
 * Each section also measures two floors: Node's own (raw node:net: the same work by hand, bench/peers/raw-*.ts)
 * and the design's (the raw server with a fiber per connection that every read resumes and a Scope owning the
 * socket, bench/peers/effect-fiber.ts): what the design card's shape costs before the framework does anything.
 *
 * Every server is a child process on 127.0.0.1 with a free port, stopped by PID at the end, on error and on
 * Ctrl-C; every load is bounded in count and time. A section whose peer tool is missing says so and is skipped.
 * The whole run takes about 8 minutes. It prints a table and writes docs/benchmarks.md, docs/benchmarks.svg and
 * the figures behind both, docs/benchmarks.json; `--chart-only` redraws the chart from that file, measuring nothing.
 *
 * Run: `npm run bench`. `BENCH_ONLY=redis,http,echo,memory` runs some sections (docs are then not written),
 * `BENCH_ROUNDS=3` sets the rounds (default 5: on these shared machines one round can be off by 10%),
 * `BENCH_DEBUG=1` prints every measurement, `BENCH_PROFILE=DIR` runs our servers under `node --cpu-prof` writing
 * into DIR (summarise with bench/profile-summary.ts). Exits 0 when it measured, met or not: it is a report, not a
 * gate.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { connect, createServer } from "node:net"
import { cpus, release } from "node:os"
import { delimiter, join } from "node:path"
import { performance } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"

const ROOT = join(import.meta.dirname, "..")
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5))
const ONLY = process.env.BENCH_ONLY?.split(",").map((s) => s.trim()).filter((s) => s !== "")
const DEBUG = process.env.BENCH_DEBUG !== undefined && process.env.BENCH_DEBUG !== ""
const PROFILE = process.env.BENCH_PROFILE
const NODE = process.execPath
const SOURCE = "--conditions=@effect-asynchat/source"
const INSTALL = "apt-get install redis-server redis-tools wrk"
/** The rows that measure a floor rather than a framework: Node's own, and what the design costs by itself. */
const FIBER_FLOOR = "fiber + Scope"
const fiberArgv = (protocol: "lines" | "redis" | "http") => [NODE, "bench/peers/effect-fiber.ts", protocol, "PORT"]
const FLOORS = ["raw node:net", FIBER_FLOOR]

// Workload sizes. redis-benchmark's `-t ping` is two tests (inline and multibulk), so one run is 4 x -n
// requests; at -P 16 redis-server spends well under 1 µs a request, so that run is repeated to pass 1 s of CPU.
const REDIS_N = 200_000
const REDIS_P16_RUNS = 4
const WRK_SECONDS = 5
const ECHO = { connections: 20, depth: 16, line: 64, linesPerConnection: 150_000 }
const IDLE_CONNECTIONS = 10_000
/** The young generation a deployment with many idle connections may bound V8 to (MB per semi-space). */
const SMALL_YOUNG_GENERATION = "--max-semi-space-size=4"

// --- processes ---------------------------------------------------------------------------------------------

/** Every child started, so that an error or Ctrl-C can stop them by PID. */
const children = new Set<ChildProcess>()

const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null

const killAll = () => {
  for (const child of children) if (alive(child)) child.kill("SIGKILL")
}
process.on("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping ${[...children].filter(alive).map((c) => c.pid).join(", ") || "nothing"}`)
    killAll()
    process.exit(130)
  })
}

/** Runs `argv` with a raised open-file limit: `exec` keeps the PID, so the PID measured is the program's. */
const withFileLimit = (argv: ReadonlyArray<string>): Array<string> => [
  "bash",
  "-c",
  "n=$(ulimit -Hn); [ \"$n\" = unlimited ] && n=1048576; ulimit -n \"$n\" && exec \"$0\" \"$@\"",
  ...argv
]

interface Proc {
  readonly child: ChildProcess
  readonly pid: number
  /** The end of what it wrote, for error messages. */
  output: string
  readonly exited: Promise<void>
}

const start = (argv: ReadonlyArray<string>): Proc => {
  const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] })
  children.add(child)
  if (child.pid === undefined) throw new Error(`cannot start ${argv.join(" ")}`)
  const proc: Proc = {
    child,
    pid: child.pid,
    output: "",
    exited: new Promise((resolve) => child.once("close", () => resolve()))
  }
  const keep = (data: Buffer) => {
    proc.output = (proc.output + data.toString()).slice(-64 * 1024)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  child.once("error", (e) => {
    proc.output += `\n${e.message}`
  })
  return proc
}

/** Stops `proc` by PID: SIGTERM (a graceful exit, which `--cpu-prof` needs), SIGKILL if it lingers. */
const stop = async (proc: Proc): Promise<void> => {
  if (alive(proc.child)) proc.child.kill("SIGTERM")
  const gone = await Promise.race([proc.exited.then(() => true), sleep(8000).then(() => false)])
  if (!gone) {
    proc.child.kill("SIGKILL")
    await proc.exited
  }
  children.delete(proc.child)
}

/** Runs a load generator to its end, killed after `timeoutMs`; fails unless it exits 0. */
const runLoad = async (argv: ReadonlyArray<string>, timeoutMs: number): Promise<string> => {
  const proc = start(argv)
  const timer = setTimeout(() => proc.child.kill("SIGKILL"), timeoutMs)
  await proc.exited
  clearTimeout(timer)
  children.delete(proc.child)
  if (proc.child.exitCode !== 0) {
    throw new Error(
      `${argv.join(" ")} ${
        proc.child.signalCode === "SIGKILL" ? `timed out after ${timeoutMs} ms` : `exited ${proc.child.exitCode}`
      }:\n${proc.output.slice(-2000)}`
    )
  }
  return proc.output
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject()))
    })
  })

const canConnect = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

interface Server extends Proc {
  readonly name: string
  readonly port: number
}

/** Starts a server on a free port (`argv` gets it through `PORT`) and waits until it accepts a connection. */
const startServer = async (
  name: string,
  argv: ReadonlyArray<string>,
  options: { readonly fileLimit?: boolean } = {}
): Promise<Server> => {
  const port = await freePort()
  const withPort = argv.map((a) => a.replaceAll("PORT", String(port)))
  const proc = start(options.fileLimit === true ? withFileLimit(withPort) : withPort)
  const deadline = performance.now() + 30_000
  while (!(await canConnect(port))) {
    if (!alive(proc.child)) throw new Error(`${name} exited on start:\n${proc.output.slice(-2000)}`)
    if (performance.now() > deadline) {
      await stop(proc)
      throw new Error(`${name} did not accept connections within 30 s:\n${proc.output.slice(-2000)}`)
    }
    await sleep(100)
  }
  return Object.assign(proc, { name, port })
}

// --- /proc -------------------------------------------------------------------------------------------------

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()

/** utime + stime of the whole process (all its threads), in seconds. */
const cpuSeconds = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1])

const openFiles = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length

// --- measuring ---------------------------------------------------------------------------------------------

const median = (xs: ReadonlyArray<number>): number => {
  const s = xs.toSorted((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** A row of the report: ours and the peer in `unit` per operation, the median ratio, the target if any. */
interface Row {
  readonly section: string
  readonly workload: string
  readonly ours: string
  readonly oursValue: number
  readonly peer: string
  readonly peerValue: number
  readonly unit: string
  readonly ratio: number
  readonly rounds: ReadonlyArray<number>
  /** The largest acceptable ratio; undefined for a figure shown for information. */
  readonly target: number | undefined
  readonly targetText: string
}

const rows: Array<Row> = []
const notes: Array<string> = []
/** What ran, by section: "role: command". */
const commands: Array<{ readonly what: string; readonly argv: ReadonlyArray<string>; readonly note?: string }> = []

const met = (row: Row) => row.target === undefined || row.ratio <= row.target

/** Server CPU seconds per operation of one load run. */
const cpuPerOp = async (server: Server, load: (server: Server) => Promise<number>): Promise<number> => {
  const before = cpuSeconds(server.pid)
  const ops = await load(server)
  await sleep(200) // the last replies and the hang-ups are part of the work
  if (!alive(server.child)) throw new Error(`${server.name} died during the load:\n${server.output.slice(-2000)}`)
  const seconds = cpuSeconds(server.pid) - before
  if (DEBUG) {
    console.log(`  ${server.name}: ${ops} ops, ${seconds.toFixed(2)} s CPU, ${(seconds / ops * 1e6).toFixed(3)} µs/op`)
  }
  if (seconds < 1) notes.push(`${server.name}: a run used only ${seconds.toFixed(2)} s of CPU (ticks of 10 ms)`)
  return seconds / ops
}

/**
 * Measures every server `ROUNDS` times, rotating which goes first so drift falls on all alike, after one
 * warm-up load each (JIT). Returns each server's per-round figures.
 */
const alternate = async (
  servers: ReadonlyArray<Server>,
  load: (server: Server) => Promise<number>,
  warmup: (server: Server) => Promise<unknown>
): Promise<Array<Array<number>>> => {
  for (const server of servers) await warmup(server)
  const results = servers.map((): Array<number> => [])
  for (let round = 0; round < ROUNDS; round++) {
    if (DEBUG) console.log(`  round ${round + 1}`)
    for (let k = 0; k < servers.length; k++) {
      const i = (k + round) % servers.length
      results[i].push(await cpuPerOp(servers[i], load))
    }
  }
  return results
}

const addRow = (
  fields: Omit<Row, "ratio" | "oursValue" | "peerValue" | "rounds" | "targetText">,
  ours: ReadonlyArray<number>,
  peer: ReadonlyArray<number>,
  scale: number
) => {
  const rounds = ours.map((x, i) => x / peer[i])
  const row: Row = {
    ...fields,
    oursValue: median(ours) * scale,
    peerValue: median(peer) * scale,
    ratio: median(rounds),
    rounds,
    targetText: fields.target === undefined ? "" : `≤ ${fields.target}x`
  }
  rows.push(row)
  console.log(
    `  ${row.workload}: ${row.ours} ${row.oursValue.toFixed(2)} vs ${row.peer} ${
      row.peerValue.toFixed(2)
    } ${row.unit},` +
      ` ratio ${row.ratio.toFixed(2)} (rounds ${rounds.map((r) => r.toFixed(2)).join(", ")})` +
      (row.target === undefined ? "" : ` target ${row.targetText}: ${met(row) ? "met" : "MISSED"}`)
  )
}

// --- tools -------------------------------------------------------------------------------------------------

const onPath = (tool: string): boolean =>
  (process.env.PATH ?? "").split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, tool), constants.X_OK)
      return true
    } catch {
      return false
    }
  })

/** The tools of `tools` not found, said once; true when all are there. */
/** Says that something was skipped, now and in the report's notes. */
const skipped = (message: string): void => {
  console.log(message)
  notes.push(message)
}

const need = (section: string, tools: ReadonlyArray<string>, install: string): boolean => {
  const missing = tools.filter((t) => !onPath(t))
  if (missing.length === 0) return true
  skipped(`${section}: skipped, ${missing.join(", ")} not found (install: ${install})`)
  return false
}

/** Whether examples/cli.ts lists the example `name` (its module, e.g. `Redis`); says so when it does not. */
const needExample = (section: string, name: string): boolean => {
  let listed = false
  try {
    listed = readFileSync(join(ROOT, "examples", "cli.ts"), "utf8").includes(`${name}.command`)
  } catch {
    listed = false
  }
  if (!listed) skipped(`${section}: skipped, examples/cli.ts does not list the ${section} example`)
  return listed
}

/** Our servers: Node with the source condition, under `--cpu-prof` when BENCH_PROFILE is set. */
const ours = (...args: ReadonlyArray<string>): Array<string> => [
  NODE,
  SOURCE,
  ...(PROFILE === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${PROFILE}`]),
  ...args
]

const shown = (argv: ReadonlyArray<string>) =>
  argv.map((a) => (a === NODE ? "node" : a === "" ? "\"\"" : a)).filter((a) => !a.startsWith("--cpu-prof")).join(" ")

// --- 1. redis ----------------------------------------------------------------------------------------------

const redisBenchmark = (pipeline: number, n = REDIS_N) =>
  ["redis-benchmark", "-h", "127.0.0.1", "-p", "PORT", "-c", "50", "-n", String(n), "-t", "ping,set,get"].concat(
    ["-P", String(pipeline), "-q"]
  )

const redis = async () => {
  console.log("\nredis: examples/redis.ts vs redis-server, redis-benchmark -c 50 -n 200000 -t ping,set,get")
  if (!need("redis", ["redis-server", "redis-benchmark"], INSTALL)) return
  if (!needExample("redis", "Redis")) return
  const oursArgv = ours("examples/cli.ts", "redis", "--port", "PORT")
  const peerArgv = ["redis-server", "--port", "PORT", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
  const rawArgv = [NODE, "bench/peers/raw-redis.ts", "PORT"]
  commands.push(
    { what: "redis, ours", argv: oursArgv },
    { what: "redis, peer", argv: peerArgv },
    { what: "redis, Node's floor", argv: rawArgv },
    { what: "redis, the design's floor", argv: fiberArgv("redis") },
    { what: "redis, load", argv: redisBenchmark(1), note: "once per measurement" },
    { what: "redis, load", argv: redisBenchmark(16), note: `${REDIS_P16_RUNS} times per measurement` }
  )
  const servers = [
    await startServer("ours (redis)", oursArgv),
    await startServer("redis-server", peerArgv),
    await startServer("raw node:net (redis)", rawArgv),
    await startServer("fiber + Scope (redis)", fiberArgv("redis"))
  ]
  try {
    const run = async (server: Server, pipeline: number, n = REDIS_N) => {
      const out = await runLoad(redisBenchmark(pipeline, n).map((a) => a.replace("PORT", String(server.port))), 180_000)
      const tests = [...out.matchAll(/^\s*([A-Z_]+): [\d.]+ requests per second/gm)].length
      if (tests !== 4) throw new Error(`redis-benchmark reported ${tests} tests, not 4:\n${out.slice(-2000)}`)
      return tests * n
    }
    for (const pipeline of [1, 16]) {
      const runs = pipeline === 1 ? 1 : REDIS_P16_RUNS
      const [o, p, r, e] = await alternate(
        servers,
        async (server) => {
          let ops = 0
          for (let i = 0; i < runs; i++) ops += await run(server, pipeline)
          return ops
        },
        (server) => run(server, pipeline, 20_000)
      )
      const fields = { section: "redis", workload: `redis-benchmark -P ${pipeline}`, unit: "µs/req" }
      addRow({ ...fields, ours: "ours", peer: "redis-server", target: pipeline === 1 ? 1.2 : 2 }, o, p, 1e6)
      // Node's own floor: what no framework on Node can go below
      addRow({ ...fields, ours: "raw node:net", peer: "redis-server", target: undefined }, r, p, 1e6)
      addRow({ ...fields, ours: "ours", peer: "raw node:net", target: undefined }, o, r, 1e6)
      addRow({ ...fields, ours: FIBER_FLOOR, peer: "redis-server", target: undefined }, e, p, 1e6)
    }
  } finally {
    for (const server of servers) await stop(server)
  }
}

// --- 2. http11 ---------------------------------------------------------------------------------------------

const wrk = (seconds: number) => ["wrk", "-t1", "-c50", `-d${seconds}s`, "http://127.0.0.1:PORT/"]

const http = async () => {
  console.log(`\nhttp11: examples/http11.ts vs node:http, wrk -t1 -c50 -d${WRK_SECONDS}s`)
  if (!need("http11", ["wrk"], INSTALL)) return
  if (!needExample("http11", "Http11")) return
  const oursArgv = ours("examples/cli.ts", "http11", "--port", "PORT")
  const nodeArgv = [NODE, "bench/peers/node-http.ts", "PORT"]
  const rawArgv = [NODE, "bench/peers/raw-http.ts", "PORT"]
  commands.push(
    { what: "http11, ours", argv: oursArgv },
    { what: "http11, peer", argv: nodeArgv },
    { what: "http11, Node's floor", argv: rawArgv },
    { what: "http11, the design's floor", argv: fiberArgv("http") },
    { what: "http11, load", argv: wrk(WRK_SECONDS) }
  )
  const servers = [
    await startServer("ours (http11)", oursArgv),
    await startServer("node:http", nodeArgv),
    await startServer("raw node:net (http)", rawArgv),
    await startServer("fiber + Scope (http)", fiberArgv("http"))
  ]
  try {
    const run = async (server: Server, seconds: number) => {
      const out = await runLoad(wrk(seconds).map((a) => a.replace("PORT", String(server.port))), 60_000)
      const requests = Number(/(\d+) requests in/.exec(out)?.[1])
      if (!(requests > 0) || /Non-2xx/.test(out)) throw new Error(`wrk against ${server.name}:\n${out}`)
      if (/Socket errors/.test(out)) notes.push(`wrk against ${server.name}: ${/Socket errors.*/.exec(out)?.[0]}`)
      return requests
    }
    const [o, n, r, e] = await alternate(servers, (server) => run(server, WRK_SECONDS), (server) => run(server, 2))
    const fields = { section: "http11", workload: `wrk -t1 -c50 -d${WRK_SECONDS}s`, unit: "µs/req" }
    addRow({ ...fields, ours: "ours", peer: "node:http", target: 0.7 }, o, n, 1e6)
    addRow({ ...fields, ours: "raw node:net", peer: "node:http", target: undefined }, r, n, 1e6)
    addRow({ ...fields, ours: "ours", peer: "raw node:net", target: undefined }, o, r, 1e6)
    addRow({ ...fields, ours: FIBER_FLOOR, peer: "node:http", target: undefined }, e, n, 1e6)
  } finally {
    for (const server of servers) await stop(server)
  }
}

// --- 3. line echo ------------------------------------------------------------------------------------------

const hasAsynchat = (): boolean => {
  if (!onPath("python3")) return false
  try {
    execFileSync("python3", ["-W", "ignore", "-c", "import asynchat, asyncore"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const echo = async () => {
  const { connections, depth, line, linesPerConnection } = ECHO
  console.log(`\nline echo: ${connections} connections x ${depth} lines of ${line} B in flight`)
  const python = hasAsynchat()
  if (!python) {
    skipped("line echo: asynchat skipped, python3 with asynchat (3.11 or older) not found (apt-get install python3)")
  }
  const oursArgv = ours("bench/servers/echo-lines.ts", "PORT")
  const framedArgv = ours("bench/servers/echo-lines.ts", "PORT", "--frame-timeout")
  const rawArgv = [NODE, "bench/peers/raw-line-echo.ts", "PORT"]
  const pyArgv = ["python3", "bench/peers/asynchat_line_echo.py", "PORT"]
  const client = (lines: number) => [
    NODE,
    "bench/load/line-echo-client.ts",
    "PORT",
    ...[connections, depth, line, lines, 60_000].map(String)
  ]
  commands.push(
    { what: "line echo, ours", argv: oursArgv },
    { what: "line echo, ours with its frame timeout", argv: framedArgv },
    { what: "line echo, peer", argv: rawArgv },
    { what: "line echo, the design's floor", argv: fiberArgv("lines") },
    ...(python ? [{ what: "line echo, peer", argv: pyArgv }] : []),
    { what: "line echo, load", argv: client(linesPerConnection) }
  )
  const servers = [
    await startServer("ours (echo-lines)", oursArgv),
    await startServer("ours (echo-lines, frame timeout)", framedArgv),
    await startServer("raw node:net (echo)", rawArgv),
    await startServer("fiber + Scope (echo)", fiberArgv("lines"))
  ]
  if (python) servers.push(await startServer("asynchat", pyArgv))
  try {
    const run = async (server: Server, lines: number) => {
      const out = await runLoad(client(lines).map((a) => a.replace("PORT", String(server.port))), 90_000)
      const result = JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as { lines?: number }
      if (result.lines !== connections * lines) throw new Error(`line-echo-client against ${server.name}:\n${out}`)
      return result.lines
    }
    const [o, f, r, e, p] = await alternate(
      servers,
      (server) => run(server, linesPerConnection),
      (server) => run(server, linesPerConnection / 10)
    )
    const fields = { section: "line echo", workload: `${connections} conns x ${depth} in flight`, unit: "µs/line" }
    addRow({ ...fields, ours: "ours", peer: "raw node:net", target: 1.25 }, o, r, 1e6)
    if (p !== undefined) addRow({ ...fields, ours: "ours", peer: "asynchat", target: 0.25 }, o, p, 1e6)
    addRow({ ...fields, ours: "ours, frame timeout", peer: "raw node:net", target: undefined }, f, r, 1e6)
    addRow({ ...fields, ours: FIBER_FLOOR, peer: "raw node:net", target: undefined }, e, r, 1e6)
    if (p !== undefined) addRow({ ...fields, ours: "raw node:net", peer: "asynchat", target: undefined }, r, p, 1e6)
    if (p !== undefined) addRow({ ...fields, ours: FIBER_FLOOR, peer: "asynchat", target: undefined }, e, p, 1e6)
  } finally {
    for (const server of servers) await stop(server)
  }
}

// --- 4. memory ---------------------------------------------------------------------------------------------

const memory = async () => {
  console.log(`\nmemory: ${IDLE_CONNECTIONS} idle connections, server RSS per connection`)
  const oursArgv = ours("bench/servers/echo-lines.ts", "PORT")
  const framedArgv = ours("bench/servers/echo-lines.ts", "PORT", "--frame-timeout")
  const rawArgv = [NODE, "bench/peers/raw-line-echo.ts", "PORT"]
  // V8 grows its young generation while a burst of accepts leaves objects that survive, and keeps it grown: a
  // deployment holding many idle connections bounds it. Both servers measured so too, for information.
  const boundedOursArgv = ours(SMALL_YOUNG_GENERATION, "bench/servers/echo-lines.ts", "PORT")
  const boundedRawArgv = [NODE, SMALL_YOUNG_GENERATION, "bench/peers/raw-line-echo.ts", "PORT"]
  const boundedFiberArgv = [NODE, SMALL_YOUNG_GENERATION, ...fiberArgv("lines").slice(1)]
  const client = [NODE, "bench/load/idle-client.ts", "PORT", String(IDLE_CONNECTIONS), "200", "120000"]
  commands.push(
    { what: "memory, ours", argv: oursArgv },
    { what: "memory, ours with its frame timeout", argv: framedArgv },
    { what: "memory, peer", argv: rawArgv },
    { what: "memory, the design's floor", argv: fiberArgv("lines") },
    { what: "memory, ours with a bounded young generation", argv: boundedOursArgv },
    { what: "memory, peer with a bounded young generation", argv: boundedRawArgv },
    { what: "memory, the design's floor with a bounded young generation", argv: boundedFiberArgv },
    { what: "memory, load", argv: client }
  )
  /** Bytes of RSS per connection on a fresh server: after minus before, once every connection is accepted. */
  const perConnection = async (name: string, argv: ReadonlyArray<string>): Promise<number> => {
    const server = await startServer(name, argv, { fileLimit: true })
    let load: Proc | undefined
    try {
      await sleep(1000) // past start-up and the readiness probe
      const before = rssKiB(server.pid)
      const files = openFiles(server.pid)
      load = start(withFileLimit(client.map((a) => a.replace("PORT", String(server.port)))))
      // Accepted means a file descriptor in the server, which the client's "connected" does not promise.
      const deadline = performance.now() + 60_000
      while (openFiles(server.pid) < files + IDLE_CONNECTIONS) {
        if (!alive(load.child)) throw new Error(`idle-client exited:\n${load.output.slice(-2000)}`)
        if (!alive(server.child)) throw new Error(`${name} died:\n${server.output.slice(-2000)}`)
        if (performance.now() > deadline) throw new Error(`${name} did not accept ${IDLE_CONNECTIONS} connections`)
        await sleep(100)
      }
      await sleep(2000) // let allocations that follow an accept settle
      const after = rssKiB(server.pid)
      if (DEBUG) console.log(`  ${name}: RSS ${before} KiB -> ${after} KiB`)
      return ((after - before) * 1024) / IDLE_CONNECTIONS
    } finally {
      if (load !== undefined) await stop(load)
      await stop(server)
    }
  }
  const subjects = [
    { name: "ours (echo-lines)", argv: oursArgv },
    { name: "ours (echo-lines, frame timeout)", argv: framedArgv },
    { name: "raw node:net (echo)", argv: rawArgv },
    { name: "fiber + Scope (echo)", argv: fiberArgv("lines") },
    { name: "ours (echo-lines, bounded young generation)", argv: boundedOursArgv },
    { name: "raw node:net (echo, bounded young generation)", argv: boundedRawArgv },
    { name: "fiber + Scope (echo, bounded young generation)", argv: boundedFiberArgv }
  ]
  const results = subjects.map((): Array<number> => [])
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < subjects.length; k++) {
      const i = (k + round) % subjects.length
      results[i].push(await perConnection(subjects[i].name, subjects[i].argv))
    }
  }
  const [o, f, r, e, bo, br, be] = results
  const fields = { section: "memory", workload: `${IDLE_CONNECTIONS} idle connections`, unit: "KiB/conn" }
  addRow({ ...fields, ours: "ours", peer: "raw node:net", target: 2 }, o, r, 1 / 1024)
  addRow({ ...fields, ours: "ours, frame timeout", peer: "raw node:net", target: undefined }, f, r, 1 / 1024)
  addRow({ ...fields, ours: FIBER_FLOOR, peer: "raw node:net", target: undefined }, e, r, 1 / 1024)
  const bounded = `young gen. ${SMALL_YOUNG_GENERATION.split("=")[1]} MB`
  for (const [name, values] of [["ours", bo], [FIBER_FLOOR, be]] as const) {
    addRow(
      { ...fields, ours: `${name}, ${bounded}`, peer: `raw node:net, ${bounded}`, target: undefined },
      values,
      br,
      1 / 1024
    )
  }
}

// --- report ------------------------------------------------------------------------------------------------

const machine = () => {
  const os = /PRETTY_NAME="([^"]*)"/.exec((() => {
    try {
      return readFileSync("/etc/os-release", "utf8")
    } catch {
      return ""
    }
  })())?.[1] ?? "Linux"
  return {
    cpu: cpus()[0]?.model.trim() ?? "unknown CPU",
    cores: cpus().length,
    node: process.version,
    os: `${os}, kernel ${release()}`
  }
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))

const tableRows = () =>
  rows.map((r) => [
    r.section,
    r.workload,
    `${r.ours} ${fmt(r.oursValue)}`,
    `${r.peer} ${fmt(r.peerValue)}`,
    r.unit,
    `${r.ratio.toFixed(2)}x`,
    r.rounds.map((x) => x.toFixed(2)).join(" "),
    r.targetText || "(info)",
    r.target === undefined ? "" : met(r) ? "met" : "MISSED"
  ])

const HEADER = ["section", "workload", "ours", "peer", "unit", "ours/peer", "rounds", "target", "verdict"]

/** A padded table: dprint formats Markdown tables this way, so the file stays `dprint check` clean. */
const table = (cells: ReadonlyArray<ReadonlyArray<string>>, markdown: boolean): string => {
  const all = [HEADER, ...cells]
  const width = HEADER.map((_, c) => Math.max(...all.map((row) => [...row[c]].length)))
  const line = (row: ReadonlyArray<string>) =>
    markdown
      ? `| ${row.map((cell, c) => cell + " ".repeat(width[c] - [...cell].length)).join(" | ")} |`
      : row.map((cell, c) => cell + " ".repeat(width[c] - [...cell].length)).join("  ").trimEnd()
  const rule = markdown
    ? `| ${width.map((w) => "-".repeat(w)).join(" | ")} |`
    : width.map((w) => "-".repeat(w)).join("  ")
  return [line(HEADER), rule, ...cells.map(line)].join("\n")
}

const escapeXml = (s: string) => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")

/** What the chart is drawn from, written beside the Markdown so that `--chart-only` redraws it unmeasured. */
interface Report {
  readonly date: string
  readonly rounds: number
  readonly machine: ReturnType<typeof machine>
  readonly rows: ReadonlyArray<Row>
}

const NODE_FLOOR = "raw node:net"

/** A server against one Node's floor: the median of its per-round ratios, and its own median figure. */
interface Figure {
  readonly name: string
  readonly ratio: number
  readonly value: number
}

interface Target {
  /** Where the target falls against Node's floor. */
  readonly at: number
  readonly text: string
  readonly met: boolean
}

/** One workload against one Node's floor (memory has a second: every server with a bounded young generation). */
interface Group {
  readonly workload: string
  readonly floor: number
  readonly ours: ReadonlyArray<Figure & { readonly targets: ReadonlyArray<Target> }>
  readonly design: Figure | undefined
  readonly peers: ReadonlyArray<Figure>
}

/**
 * Per-round ratios a/b among one workload's rows: measured, inverted, or through a third server both were
 * measured against, which cancels round by round since all ran in the same rounds.
 */
const perRound = (rs: ReadonlyArray<Row>, a: string, b: string): ReadonlyArray<number> | undefined => {
  const direct = rs.find((r) => r.ours === a && r.peer === b)
  if (direct !== undefined) return direct.rounds
  const inverse = rs.find((r) => r.ours === b && r.peer === a)
  if (inverse !== undefined) return inverse.rounds.map((x) => 1 / x)
  for (const r of rs.filter((r) => r.ours === a)) {
    const other = rs.find((s) => s.ours === b && s.peer === r.peer)
    if (other !== undefined) return r.rounds.map((x, i) => x / other.rounds[i])
  }
  return undefined
}

const peerName = (name: string) => (name === "asynchat" ? "CPython's asynchat" : name)

const groupsOf = (rs: ReadonlyArray<Row>): Array<Group> => {
  const names = [...new Set(rs.flatMap((r) => [r.ours, r.peer]))]
  const valueOf = (name: string) => {
    const r = rs.find((r) => r.ours === name || r.peer === name)
    return r === undefined ? NaN : r.ours === name ? r.oursValue : r.peerValue
  }
  return names.filter((n) => n.startsWith(NODE_FLOOR)).map((floor) => {
    // ", young gen. 4 MB": what every server of the group ran with, said once in the group's title
    const variant = floor.slice(NODE_FLOOR.length)
    const ratioOf = (name: string) => median(perRound(rs, name, floor) ?? [NaN])
    const figure = (name: string): Figure => ({
      name: peerName(variant !== "" && name.endsWith(variant) ? name.slice(0, -variant.length) : name),
      ratio: ratioOf(name),
      value: valueOf(name)
    })
    const others = names.filter((n) => !n.startsWith(NODE_FLOOR) && perRound(rs, n, floor) !== undefined)
    const ours = others.filter((n) => n.startsWith("ours"))
    const design = others.find((n) => n.startsWith(FIBER_FLOOR))
    // A target stated against a peer is drawn where it falls against Node's floor: target x peer / floor.
    const targets = (name: string) =>
      rs.filter((r) => r.ours === name && r.target !== undefined).map((r): Target => {
        const at = (r.target ?? NaN) * (r.peer === floor ? 1 : ratioOf(r.peer))
        const against = r.peer === floor ? " Node's floor" : ` ${peerName(r.peer)} (${at.toFixed(2)}x Node's floor)`
        return { at, text: `${r.targetText}${against}`, met: met(r) }
      }).filter((t) => Number.isFinite(t.at))
    return {
      workload: variant === "" ? rs[0].workload : `${rs[0].workload}, every server with${variant.slice(1)}`,
      floor: valueOf(floor),
      ours: ours.map((name) => ({ ...figure(name), targets: targets(name) })),
      design: design === undefined ? undefined : figure(design),
      peers: others.filter((n) => !ours.includes(n) && n !== design).map(figure)
    }
  })
}

const COLOR = { ours: "#2f64ad", variant: "#8db0de", design: "#f08c00", peer: "#9a9a9a" }
const VERDICT = { met: "#2e7d32", missed: "#c62828" }
const PARITY = `stroke="#222" stroke-dasharray="4 3" stroke-width="1.5"`
const TICK = `stroke="#111" stroke-width="3"`

const text = (x: number, y: number, s: string, attrs = "", tail = "") =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}"${attrs}>${escapeXml(s)}${tail}</text>`
const line = (x1: number, y1: number, x2: number, y2: number, attrs: string) =>
  `<line x1="${x1.toFixed(1)}" y1="${y1.toFixed(1)}" x2="${x2.toFixed(1)}" y2="${y2.toFixed(1)}" ${attrs}/>`
const rect = (x: number, y: number, w: number, h: number, fill: string) =>
  `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(w, 0).toFixed(1)}" height="${h}" fill="${fill}"/>`
/** A ◆ centred on (x, y): the design's floor, on the main bar and in its own row. */
const diamond = (x: number, y: number, r = 6) =>
  `<path d="M${x.toFixed(1)} ${y - r}l${r} ${r}l${-r} ${r}l${-r} ${-r}z" fill="${COLOR.design}" stroke="#333"/>`

const LEGEND: ReadonlyArray<readonly [string, string]> = [
  [rect(24, -7, 28, 14, COLOR.ours), "ours: our server ÷ Node's floor; beside each bar its ratio and absolute figure"],
  [rect(24, -4, 28, 8, COLOR.variant), "ours with its frame timeout on"],
  [line(38, -9, 38, 9, PARITY), "1x, parity: Node's floor (raw node:net doing the same work by hand)"],
  [diamond(38, 0), "the design's floor (fiber + Scope: a fiber per connection and a Scope owning its socket)"],
  [line(38, -9, 38, 9, TICK), "a target for ours, drawn where it falls on this scale; its row says met or missed"],
  [rect(24, -3, 28, 6, COLOR.peer), "a peer, for information: redis-server, node:http, CPython's asynchat"]
]

/**
 * One panel per section, one group of rows per workload, each row one server against Node's floor: a bar for
 * ours (the first carries the design's floor and the targets as marks too), a thin grey bar for a peer, a
 * mark for a floor or a target. Each label has its row to itself, after the row's last mark, so none overlaps.
 */
const svg = (report: Report): string => {
  const width = 940
  const plot = { left: 180, width: 560 }
  const m = report.machine
  let y = 0
  const out = [
    text(
      16,
      y += 26,
      "effect-asynchat servers against Node's floor (lower is better)",
      ` font-size="17" font-weight="bold"`
    ),
    text(
      16,
      y += 20,
      "Server CPU time per operation (memory: RSS per idle connection) divided by raw node:net's on the same work," +
        ` the median of ${report.rounds} per-round ratios.`
    ),
    text(
      16,
      y += 17,
      `${report.date}; ${m.cpu}, ${m.cores} cores; Node ${m.node}. Absolute figures drift ±15% between runs,` +
        " ratios from one run hold.",
      ` fill="#555"`
    ),
    `<rect x="12" y="${y += 12}" width="${width - 24}" height="${LEGEND.length * 20 + 12}" fill="#f6f8fa"` +
    ` stroke="#d0d7de"/>`
  ]
  y += 6
  for (const [mark, label] of LEGEND) {
    out.push(`<g transform="translate(0 ${(y += 20) - 4})">${mark}</g>`, text(64, y, label))
  }
  y += 16
  for (const section of new Set(report.rows.map((r) => r.section))) {
    const rs = report.rows.filter((r) => r.section === section)
    const workloads = [...new Set(rs.map((r) => r.workload))]
    const groups = workloads.flatMap((w) => groupsOf(rs.filter((r) => r.workload === w)))
    if (groups.length === 0) continue
    const unit = rs[0].unit
    const marks = groups.flatMap((g) => [
      ...g.ours.flatMap((o) => [o.ratio, ...o.targets.map((t) => t.at)]),
      ...g.peers.map((p) => p.ratio),
      g.design?.ratio ?? 0
    ])
    // Ticks every 0.5x up to 4x, every 1x beyond, where a finer grid would only add lines.
    const top = Math.max(1, ...marks.filter(Number.isFinite)) * 1.05
    const step = top > 4 ? 1 : 0.5
    const max = Math.ceil(top / step) * step
    const x = (v: number) => plot.left + (v / max) * plot.width
    const what = unit === "KiB/conn"
      ? "server RSS per idle connection"
      : `server CPU time per ${unit === "µs/req" ? "request" : "line"}`
    const panelTop = y += 14
    const grid: Array<string> = [] // drawn first, behind the rows
    const body = [
      text(24, y += 22, `${section}: ${workloads.join(", ")}`, ` font-size="15" font-weight="bold"`),
      text(24, y += 17, `${what} (${unit}) as a ratio to Node's floor`, ` fill="#555"`)
    ]
    const plotTop = y + 6
    for (const g of groups) {
      // a group's own title only where the panel's does not say it already
      if (groups.length > 1) body.push(text(24, y += 26, g.workload, ` font-weight="bold"`))
      else y += 8
      const groupTop = y + 6
      /** A row of `pitch` px: its name at the left, `draw(centre)`, its label after `end` (before it near the edge). */
      const row = (name: string, pitch: number, draw: (c: number) => string, end: number, label: string, tail = "") => {
        const c = (y += pitch) - pitch / 2 + 2
        const after = end + 7 + label.length * 7 <= width - 12
        body.push(
          text(plot.left - 10, c + 4, name, ` text-anchor="end"${pitch > 20 ? ` font-weight="bold"` : ""}`),
          draw(c),
          text(after ? end + 7 : end - 9, c + 4, label, ` class="halo"${after ? "" : ` text-anchor="end"`}`, tail)
        )
      }
      const figures = (f: Figure) => `${f.ratio.toFixed(2)}x · ${fmt(f.value)} ${unit}`
      g.ours.forEach((o, i) => {
        const h = i === 0 ? 18 : 10
        const marks = [
          rect(plot.left, 0, x(o.ratio) - plot.left, h, i === 0 ? COLOR.ours : COLOR.variant),
          // parity runs behind the rows, under the labels that cross it, so over a bar it is drawn again
          line(x(1), 0, x(1), h, `stroke="${i === 0 ? "white" : "#222"}" stroke-dasharray="4 3" stroke-width="2"`),
          ...(i === 0 && g.design !== undefined ? [diamond(x(g.design.ratio), h / 2)] : []),
          ...o.targets.map((t) => line(x(t.at), -5, x(t.at), h + 5, TICK))
        ].join("")
        const last = Math.max(o.ratio, i === 0 ? (g.design?.ratio ?? 0) : 0, ...o.targets.map((t) => t.at))
        row(
          o.name,
          i === 0 ? 30 : 20,
          (c) => `<g transform="translate(0 ${c - h / 2})">${marks}</g>`,
          x(last) + 3,
          figures(o)
        )
      })
      for (const t of g.ours.flatMap((o) => o.targets)) {
        const verdict = t.met ? "met" : "missed"
        const tail = `<tspan fill="${VERDICT[verdict]}" font-weight="bold">${verdict}</tspan>`
        row("target", 20, (c) => line(x(t.at), c - 7, x(t.at), c + 7, TICK), x(t.at) + 2, `${t.text}: `, tail)
      }
      const design = g.design
      if (design !== undefined) {
        row(
          "the design's floor",
          20,
          (c) => diamond(x(design.ratio), c),
          x(design.ratio) + 6,
          figures(design)
        )
      }
      // the dashed parity line is this row's mark (a tick would read as a target)
      row("Node's floor", 20, () => "", x(1), `1x · ${fmt(g.floor)} ${unit}`)
      for (const p of g.peers) {
        row(
          p.name,
          20,
          (c) => rect(plot.left, c - 3, x(p.ratio) - plot.left, 6, COLOR.peer),
          x(p.ratio),
          figures(p)
        )
      }
      grid.push(line(x(1), groupTop, x(1), y + 4, PARITY))
    }
    const axis = y += 10
    const ticks = Array.from({ length: Math.round(max / step) + 1 }, (_, i) => i * step)
    grid.unshift(...ticks.map((t) => line(x(t), plotTop, x(t), axis, `stroke="#e3e3e3"`)))
    body.push(
      line(plot.left, axis, plot.left + plot.width, axis, `stroke="#333"`),
      ...ticks.flatMap((t) => [
        line(x(t), axis, x(t), axis + 5, `stroke="#333"`),
        text(x(t), axis + 18, `${t}x`, ` text-anchor="middle"${t === 1 ? ` font-weight="bold"` : ""}`)
      ]),
      text(
        plot.left,
        y += 36,
        "each server ÷ Node's floor (raw node:net); lower is better",
        ` fill="#555" font-size="12"`
      )
    )
    y += 12
    out.push(
      rect(12, panelTop, width - 24, y - panelTop, "white").replace("/>", ` stroke="#d0d7de"/>`),
      ...grid,
      ...body
    )
  }
  const height = y + 14
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"` +
    ` font-family="sans-serif" font-size="13">`,
    `<style>.halo{paint-order:stroke;stroke:white;stroke-width:4px;stroke-linejoin:round}</style>`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...out,
    `</svg>`
  ].join("\n") + "\n"
}

/**
 * For each target, what a floor measured against the same peer in the same run: a target below a floor asks
 * for less than that floor costs, whatever a framework does.
 */
const floors = (): Array<string> =>
  rows.flatMap((r) => {
    if (r.target === undefined) return []
    const target = r.target
    return FLOORS.flatMap((name) => {
      const floor = rows.find((f) =>
        f.section === r.section && f.workload === r.workload && f.ours === name && f.peer === r.peer
      )
      if (floor === undefined) return []
      const self = rows.find((f) =>
        f.section === r.section && f.workload === r.workload && f.ours === r.ours && f.peer === name
      )
      const verdict = floor.ratio > target
        ? "the target is below that floor"
        : `ours is ${(self === undefined ? r.ratio / floor.ratio : self.ratio).toFixed(2)}x it`
      return [
        `- ${r.section}, ${r.workload}: target ${r.targetText} ${r.peer}; ${name} measures ` +
        `${floor.ratio.toFixed(2)}x ${r.peer}: ${verdict}.`
      ]
    })
  })

const markdown = (date: string, seconds: number): string => {
  const m = machine()
  const verdicts = rows.filter((r) => r.target !== undefined)
  return [
    "# Benchmarks",
    "",
    "Server CPU time per operation (utime + stime from `/proc/PID/stat`; RSS per connection for memory), ours and",
    `the peer side by side in one run, alternating, ${ROUNDS} rounds; \`ours/peer\` is the median of the per-round`,
    "ratios (lower is better). On a 2-core machine client and server share the cores, so CPU per operation, not",
    "requests per second, is what compares servers. Absolute figures drift ±15% between runs; ratios from one run",
    "hold. Written by `npm run bench` (`bench/servers.ts`).",
    "",
    `- Date: ${date} (the run took ${Math.round(seconds)} s)`,
    `- Machine: ${m.cpu}, ${m.cores} cores; ${m.os}`,
    `- Node ${m.node}`,
    "",
    table(tableRows(), true),
    "",
    `Targets met: ${verdicts.filter(met).length} of ${verdicts.length}.`,
    "",
    ...(floors().length === 0 ? [] : [
      "Floors, measured in the same run: Node's own (raw node:net, a server doing the same work by hand) and the",
      `design's (${FIBER_FLOOR}: that raw server with just what the design asks of every channel, a fiber per`,
      "connection that every read resumes and a Scope owning its socket):",
      "",
      ...floors(),
      ""
    ]),
    "![each server against Node's floor, by section](benchmarks.svg)",
    "",
    "These rows are also in `benchmarks.json`, from which `node bench/servers.ts --chart-only` redraws the chart.",
    "",
    "## Commands",
    "",
    "`PORT` is a free port picked for each server; every server listens on 127.0.0.1. In the memory section the",
    "server and the load run under `bash -c 'ulimit -n <hard limit> && exec ...'`, a fresh server each time.",
    "",
    ...commands.map((c) => `- ${c.what}: \`${shown(c.argv)}\`${c.note === undefined ? "" : ` (${c.note})`}`),
    ...(notes.length === 0 ? [] : ["", "## Notes", "", ...[...new Set(notes)].map((n) => `- ${n}`)]),
    ""
  ].join("\n")
}

// --- main --------------------------------------------------------------------------------------------------

const sections: Record<string, () => Promise<void>> = { redis, http, echo, memory }

const DOCS = join(ROOT, "docs")
/**
 * `--chart-only` redraws docs/benchmarks.svg from docs/benchmarks.json, the rows of the last full run, without
 * measuring: the chart can change without a 10-minute run whose figures would differ.
 */
const CHART_ONLY = process.argv.includes("--chart-only")

const main = async () => {
  if (CHART_ONLY) {
    const report = JSON.parse(readFileSync(join(DOCS, "benchmarks.json"), "utf8")) as Report
    writeFileSync(join(DOCS, "benchmarks.svg"), svg(report))
    console.log(`drew docs/benchmarks.svg from docs/benchmarks.json (${report.date})`)
    return
  }
  const began = performance.now()
  const m = machine()
  console.log(`${m.cpu}, ${m.cores} cores, node ${m.node}, ${m.os}; ${ROUNDS} rounds`)
  if (PROFILE !== undefined) mkdirSync(PROFILE, { recursive: true })
  for (const [name, section] of Object.entries(sections)) {
    if (ONLY !== undefined && !ONLY.includes(name)) continue
    try {
      await section()
    } catch (error) {
      const message = `${name}: failed: ${error instanceof Error ? error.message : String(error)}`
      console.error(message)
      notes.push(message.split("\n")[0])
    }
  }
  const seconds = (performance.now() - began) / 1000
  console.log(`\n${table(tableRows(), false)}\n`)
  for (const note of new Set(notes)) console.log(`note: ${note}`)
  const verdicts = rows.filter((r) => r.target !== undefined)
  console.log(`targets met: ${verdicts.filter(met).length} of ${verdicts.length}; ${Math.round(seconds)} s`)
  if (ONLY !== undefined) {
    console.log("BENCH_ONLY is set: docs/benchmarks.md, .json and .svg not written")
    return
  }
  const report: Report = { date: new Date().toISOString().replace(/\.\d+Z$/, "Z"), rounds: ROUNDS, machine: m, rows }
  mkdirSync(DOCS, { recursive: true })
  writeFileSync(join(DOCS, "benchmarks.md"), markdown(report.date, seconds))
  writeFileSync(join(DOCS, "benchmarks.json"), JSON.stringify(report, null, 2) + "\n")
  writeFileSync(join(DOCS, "benchmarks.svg"), svg(report))
  console.log("wrote docs/benchmarks.md, docs/benchmarks.json and docs/benchmarks.svg")
}

await main()

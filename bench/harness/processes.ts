/**
 * The processes of `bench/servers.ts`: servers, peers and loads started as children on 127.0.0.1, each stopped
 * by PID at the end, on error and on Ctrl-C, and what /proc says of a server's CPU time, memory and open files.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { connect, createServer } from "node:net"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"

export const ROOT = join(import.meta.dirname, "..", "..")
export const NODE = process.execPath
const SOURCE = "--conditions=@effect-asynchat/source"
/** BENCH_PROFILE=DIR: our servers run under `node --cpu-prof`, writing into DIR. */
export const PROFILE = process.env.BENCH_PROFILE

/** Our servers: Node with the source condition, under `--cpu-prof` when BENCH_PROFILE is set. */
export const ours = (...args: ReadonlyArray<string>): Array<string> => [
  NODE,
  SOURCE,
  ...(PROFILE === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${PROFILE}`]),
  ...args
]

/** The design's floor for `protocol`: a raw server in a fiber per connection with a Scope owning the socket. */
export const fiberArgv = (protocol: "lines" | "redis" | "http"): Array<string> => [
  NODE,
  "bench/peers/effect-fiber.ts",
  protocol,
  "PORT"
]

/** `argv` with `PORT` standing for `port`. */
export const withPort = (argv: ReadonlyArray<string>, port: number): Array<string> =>
  argv.map((a) => a.replaceAll("PORT", String(port)))

// --- children ----------------------------------------------------------------------------------------------

/** Every child started, so that an error or Ctrl-C can stop them by PID. */
const children = new Set<ChildProcess>()

export const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null

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
export const withFileLimit = (argv: ReadonlyArray<string>): Array<string> => [
  "bash",
  "-c",
  "n=$(ulimit -Hn); [ \"$n\" = unlimited ] && n=1048576; ulimit -n \"$n\" && exec \"$0\" \"$@\"",
  ...argv
]

/**
 * Runs `argv` with its stdout on /dev/null, for a server that prints what it receives: `exec` keeps the PID, and
 * stderr still reaches the error messages.
 */
export const withStdoutDiscarded = (argv: ReadonlyArray<string>): Array<string> => [
  "bash",
  "-c",
  "exec \"$0\" \"$@\" >/dev/null",
  ...argv
]

export interface Proc {
  readonly child: ChildProcess
  readonly pid: number
  /** The end of what it wrote, for error messages. */
  output: string
  readonly exited: Promise<void>
}

export const start = (argv: ReadonlyArray<string>): Proc => {
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
export const stop = async (proc: Proc): Promise<void> => {
  if (alive(proc.child)) proc.child.kill("SIGTERM")
  const gone = await Promise.race([proc.exited.then(() => true), sleep(8000).then(() => false)])
  if (!gone) {
    proc.child.kill("SIGKILL")
    await proc.exited
  }
  children.delete(proc.child)
}

// --- servers and loads -------------------------------------------------------------------------------------

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

export interface Server extends Proc {
  readonly name: string
  readonly port: number
}

/** Starts a server on a free port (`argv` gets it through `PORT`) and waits until it accepts a connection. */
export const startServer = async (
  name: string,
  argv: ReadonlyArray<string>,
  options: { readonly fileLimit?: boolean } = {}
): Promise<Server> => {
  const port = await freePort()
  const portArgv = withPort(argv, port)
  const proc = start(options.fileLimit === true ? withFileLimit(portArgv) : portArgv)
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

/** A server a section runs: its name in messages, what the report's list of commands calls it, its command. */
export interface Subject {
  readonly name: string
  readonly role: string
  readonly argv: ReadonlyArray<string>
}

/** Starts `subjects` in order, runs `use` with them, and stops every one started, whatever happens. */
export const withServers = async <A>(
  subjects: ReadonlyArray<Subject>,
  use: (servers: ReadonlyArray<Server>) => Promise<A>
): Promise<A> => {
  const servers: Array<Server> = []
  try {
    for (const subject of subjects) servers.push(await startServer(subject.name, subject.argv))
    return await use(servers)
  } finally {
    for (const server of servers) await stop(server)
  }
}

/** Runs a load generator against `server` to its end, killed after `timeoutMs`; fails unless it exits 0. */
export const runLoad = async (server: Server, load: ReadonlyArray<string>, timeoutMs: number): Promise<string> => {
  const argv = withPort(load, server.port)
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

// --- /proc -------------------------------------------------------------------------------------------------

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()

/** utime + stime of the whole process (all its threads), in seconds. */
export const cpuSeconds = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

export const rssKiB = (pid: number): number =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1])

export const openFiles = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length

/**
 * The memory section of `bench/servers.ts`: server RSS per idle connection, many held open
 * (bench/load/idle-client.ts), for the line-echo servers, each also with V8's young generation bounded.
 */
import { performance } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"
import { addRow, DEBUG, inRotation } from "../harness/measure.ts"
import {
  alive,
  NODE,
  openFiles,
  type Proc,
  rssKiB,
  start,
  startServer,
  stop,
  type Subject,
  withFileLimit,
  withPort
} from "../harness/processes.ts"
import { FIBER_FLOOR, listCommands, NODE_FLOOR } from "../harness/results.ts"
import { LINE_ECHO } from "./line-echo.ts"

const IDLE_CONNECTIONS = 10_000
/** The young generation a deployment with many idle connections may bound V8 to (MB per semi-space). */
const SMALL_YOUNG_GENERATION = "--max-semi-space-size=4"

const client = [NODE, "bench/load/idle-client.ts", "PORT", String(IDLE_CONNECTIONS), "200", "120000"]

/**
 * `subject` with V8's young generation bounded (the flag before the script): V8 grows it while a burst of
 * accepts leaves objects that survive, and keeps it grown, so a deployment holding many idle connections bounds it.
 */
const bounded = (subject: Subject): Subject => ({
  name: subject.name.replace(/\)$/, ", bounded young generation)"),
  role: `${subject.role} with a bounded young generation`,
  argv: subject.argv.toSpliced(subject.argv.findIndex((a) => a.startsWith("bench/")), 0, SMALL_YOUNG_GENERATION)
})

/** Bytes of RSS per connection on a fresh server: after minus before, once every connection is accepted. */
const perConnection = async ({ name, argv }: Subject): Promise<number> => {
  const server = await startServer(name, argv, { fileLimit: true })
  let load: Proc | undefined
  try {
    await sleep(1000) // past start-up and the readiness probe
    const before = rssKiB(server.pid)
    const files = openFiles(server.pid)
    load = start(withFileLimit(withPort(client, server.port)))
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

export const measure = async () => {
  console.log(`\nmemory: ${IDLE_CONNECTIONS} idle connections, server RSS per connection`)
  const { ours, framed, raw, fiber } = LINE_ECHO
  // ours and both floors also with the young generation bounded: ours has a target there too
  const subjects = [ours, framed, raw, fiber, bounded(ours), bounded(raw), bounded(fiber)]
  listCommands("memory", subjects, [{ argv: client }])
  const [o, f, r, e, bo, br, be] = await inRotation(subjects, perConnection)
  const fields = { section: "memory", workload: `${IDLE_CONNECTIONS} idle connections`, unit: "KiB/conn" }
  addRow({ ...fields, ours: "ours", peer: NODE_FLOOR, target: 3 }, o, r, 1 / 1024)
  addRow({ ...fields, ours: "ours, frame timeout", peer: NODE_FLOOR, target: undefined }, f, r, 1 / 1024)
  addRow({ ...fields, ours: FIBER_FLOOR, peer: NODE_FLOOR, target: undefined }, e, r, 1 / 1024)
  const young = `young gen. ${SMALL_YOUNG_GENERATION.split("=")[1]} MB`
  for (const [name, values] of [["ours", bo], [FIBER_FLOOR, be]] as const) {
    addRow(
      {
        ...fields,
        ours: `${name}, ${young}`,
        peer: `${NODE_FLOOR}, ${young}`,
        target: name === "ours" ? 2 : undefined
      },
      values,
      br,
      1 / 1024
    )
  }
}

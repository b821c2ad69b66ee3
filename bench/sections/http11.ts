/**
 * The http11 section of `bench/servers.ts`: examples/http11.ts against a node:http hello world under wrk, with
 * Node's floor and the design's floor beside them; then, for information, `--workers 1` against `--workers 2`
 * (requests per second, and CPU per request summed over the workers).
 */
import { readFileSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { addRow, alternate, DEBUG, inRotation } from "../harness/measure.ts"
import { need, needExample } from "../harness/prerequisites.ts"
import { cpuSeconds, fiberArgv, NODE, ours, runLoad, type Server, withServers } from "../harness/processes.ts"
import { FIBER_FLOOR, listCommands, NODE_FLOOR, notes } from "../harness/results.ts"

export const WRK_SECONDS = 5

/** wrk's keep-alive load, 50 connections, over `scheme` (`https` for the TLS section). */
export const wrk = (seconds: number, scheme: "http" | "https" = "http") => [
  "wrk",
  "-t1",
  "-c50",
  `-d${seconds}s`,
  `${scheme}://127.0.0.1:PORT/`
]

/** Requests answered in one wrk run of `seconds` against `server`, all of them 2xx. */
export const wrkRequests = async (server: Server, seconds: number, scheme: "http" | "https" = "http") => {
  const out = await runLoad(server, wrk(seconds, scheme), 60_000)
  const requests = Number(/(\d+) requests in/.exec(out)?.[1])
  if (!(requests > 0) || /Non-2xx/.test(out)) throw new Error(`wrk against ${server.name}:\n${out}`)
  if (/Socket errors/.test(out)) notes.push(`wrk against ${server.name}: ${/Socket errors.*/.exec(out)?.[0]}`)
  return requests
}

export const measure = async () => {
  console.log(`\nhttp11: examples/http11.ts vs node:http, wrk -t1 -c50 -d${WRK_SECONDS}s`)
  if (!need("http11", ["wrk"])) return
  if (!needExample("http11", "Http11")) return
  const subjects = [
    { name: "ours (http11)", role: "ours", argv: ours("examples/cli.ts", "http11", "--port", "PORT") },
    { name: "node:http", role: "peer", argv: [NODE, "bench/peers/node-http.ts", "PORT"] },
    { name: "raw node:net (http)", role: "Node's floor", argv: [NODE, "bench/peers/raw-http.ts", "PORT"] },
    { name: "fiber + Scope (http)", role: "the design's floor", argv: fiberArgv("http") }
  ]
  listCommands("http11", subjects, [{ argv: wrk(WRK_SECONDS) }])
  await withServers(subjects, async (servers) => {
    const [o, n, r, e] = await alternate(
      servers,
      (server) => wrkRequests(server, WRK_SECONDS),
      (server) => wrkRequests(server, 2)
    )
    const fields = { section: "http11", workload: `wrk -t1 -c50 -d${WRK_SECONDS}s`, unit: "µs/req" }
    addRow({ ...fields, ours: "ours", peer: NODE_FLOOR, target: 1.2 }, o, r, 1e6)
    addRow({ ...fields, ours: FIBER_FLOOR, peer: NODE_FLOOR, target: undefined }, e, r, 1e6)
    addRow({ ...fields, ours: "ours", peer: "node:http", target: undefined }, o, n, 1e6)
    addRow({ ...fields, ours: NODE_FLOOR, peer: "node:http", target: undefined }, r, n, 1e6)
  })
  await measureWorkers()
}

/** The worker processes of a `--workers` supervisor: its children, from /proc. */
const workerPids = (supervisor: number): Array<number> =>
  readFileSync(`/proc/${supervisor}/task/${supervisor}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(
    Number
  )

/**
 * `--workers 1` and `--workers 2` under the same wrk load: requests per second, and the CPU per request of all
 * the workers together (the supervisor, idle but for its workers' exits, is left out). For information: on a
 * machine of two cores wrk takes much of one, so two workers show what the kernel's spreading costs more than
 * what a second core gives.
 */
const measureWorkers = async () => {
  console.log(`\nhttp11 --workers: 1 worker vs 2, wrk -t1 -c50 -d${WRK_SECONDS}s`)
  const subjects = [1, 2].map((n) => ({
    name: `ours (http11 --workers ${n})`,
    role: `ours, ${n} worker${n === 1 ? "" : "s"}`,
    argv: ours("examples/cli.ts", "http11", "--port", "PORT", "--workers", String(n)),
    workers: n
  }))
  listCommands("http11 --workers", subjects, [{ argv: wrk(WRK_SECONDS) }])
  await withServers(subjects, async (servers) => {
    // the supervisor accepts nothing itself: wait until every worker is up
    for (const [i, server] of servers.entries()) {
      for (let t = 0; t < 100 && workerPids(server.pid).length < subjects[i].workers; t++) await sleep(100)
      await wrkRequests(server, 2) // warm-up, and every worker listening by its end
    }
    const perSecond = servers.map((): Array<number> => [])
    const cpu = await inRotation(servers.map((server, i) => ({ server, i })), async ({ i, server }) => {
      const pids = workerPids(server.pid)
      if (pids.length !== subjects[i].workers) throw new Error(`${server.name}: workers ${pids.join(", ")}`)
      const cpuOf = () => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0)
      const before = cpuOf()
      const requests = await wrkRequests(server, WRK_SECONDS)
      await sleep(200)
      const seconds = cpuOf() - before
      perSecond[i].push(requests / WRK_SECONDS)
      if (DEBUG) console.log(`  ${server.name}: ${requests} requests, ${seconds.toFixed(2)} s CPU of ${pids.length}`)
      return seconds / requests
    })
    // a workload of its own: the chart draws groups against Node's floor, which these rows do not have
    const fields = { section: "http11", workload: `wrk -t1 -c50 -d${WRK_SECONDS}s, --workers`, target: undefined }
    addRow({ ...fields, ours: subjects[1].role, peer: subjects[0].role, unit: "µs/req" }, cpu[1], cpu[0], 1e6)
    addRow({ ...fields, ours: subjects[1].role, peer: subjects[0].role, unit: "req/s" }, perSecond[1], perSecond[0], 1)
  })
}

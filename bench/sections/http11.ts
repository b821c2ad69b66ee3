/**
 * The http11 section of `bench/servers.ts`: examples/http11.ts against a node:http hello world under wrk, with
 * Node's floor and the design's floor beside them.
 */
import { addRow, alternate } from "../harness/measure.ts"
import { need, needExample } from "../harness/prerequisites.ts"
import { fiberArgv, NODE, ours, runLoad, type Server, withServers } from "../harness/processes.ts"
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
}

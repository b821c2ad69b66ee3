/**
 * The redis section of `bench/servers.ts`: examples/redis.ts against redis-server 7 under redis-benchmark,
 * one request at a time (-P 1) and pipelined (-P 16), with Node's floor and the design's floor beside them.
 */
import { addRow, alternate } from "../harness/measure.ts"
import { need, needExample } from "../harness/prerequisites.ts"
import { fiberArgv, NODE, ours, runLoad, type Server, withServers } from "../harness/processes.ts"
import { FIBER_FLOOR, listCommands, NODE_FLOOR } from "../harness/results.ts"

// redis-benchmark's `-t ping` is two tests (inline and multibulk), so one run is 4 x -n requests; at -P 16
// redis-server spends well under 1 µs a request, so that run is repeated to pass 1 s of CPU.
const REDIS_N = 200_000
const REDIS_P16_RUNS = 4

const redisBenchmark = (pipeline: number, n = REDIS_N) =>
  ["redis-benchmark", "-h", "127.0.0.1", "-p", "PORT", "-c", "50", "-n", String(n), "-t", "ping,set,get"].concat(
    ["-P", String(pipeline), "-q"]
  )

/** Requests served by one redis-benchmark run against `server`. */
const run = async (server: Server, pipeline: number, n = REDIS_N) => {
  const out = await runLoad(server, redisBenchmark(pipeline, n), 180_000)
  const tests = [...out.matchAll(/^\s*([A-Z_]+): [\d.]+ requests per second/gm)].length
  if (tests !== 4) throw new Error(`redis-benchmark reported ${tests} tests, not 4:\n${out.slice(-2000)}`)
  return tests * n
}

export const measure = async () => {
  console.log("\nredis: examples/redis.ts vs redis-server, redis-benchmark -c 50 -n 200000 -t ping,set,get")
  if (!need("redis", ["redis-server", "redis-benchmark"])) return
  if (!needExample("redis", "Redis")) return
  const subjects = [
    { name: "ours (redis)", role: "ours", argv: ours("examples/cli.ts", "redis", "--port", "PORT") },
    {
      name: "redis-server",
      role: "peer",
      argv: ["redis-server", "--port", "PORT", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    },
    { name: "raw node:net (redis)", role: "Node's floor", argv: [NODE, "bench/peers/raw-redis.ts", "PORT"] },
    { name: "fiber + Scope (redis)", role: "the design's floor", argv: fiberArgv("redis") }
  ]
  listCommands("redis", subjects, [
    { argv: redisBenchmark(1), note: "once per measurement" },
    { argv: redisBenchmark(16), note: `${REDIS_P16_RUNS} times per measurement` }
  ])
  await withServers(subjects, async (servers) => {
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
      // the target is Node's own floor, measured in the same rounds; a C server's figures are information
      addRow({ ...fields, ours: "ours", peer: NODE_FLOOR, target: pipeline === 1 ? 1.25 : 1.3 }, o, r, 1e6)
      addRow({ ...fields, ours: FIBER_FLOOR, peer: NODE_FLOOR, target: undefined }, e, r, 1e6)
      addRow({ ...fields, ours: "ours", peer: "redis-server", target: undefined }, o, p, 1e6)
      addRow({ ...fields, ours: NODE_FLOOR, peer: "redis-server", target: undefined }, r, p, 1e6)
    }
  })
}

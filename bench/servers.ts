/**
 * Servers against their peers: the server process's CPU time per operation (utime + stime from
 * /proc/PID/stat), ours and the peer's side by side in one run, alternating, several rounds, median of the
 * per-round ratios ours/peer (lower is better). On a 2-core machine client and server share the cores, so
 * requests per second would measure the machine; CPU per operation measures the server.
 *
 * 1. redis: examples/redis.ts vs redis-server 7, under redis-benchmark (-P 1 and -P 16).
 * 2. http11: examples/http11.ts vs a node:http hello world under wrk.
 * 3. tls: examples/http11.ts with `--tls-key`/`--tls-cert` vs a node:https hello world under wrk over https
 *    (a self-signed EC certificate made with openssl at bench time).
 * 4. line echo: bench/servers/echo-lines.ts vs a raw node:net splitter and CPython's asynchat, 20 connections
 *    with 16 lines of 64 bytes in flight each (bench/load/line-echo-client.ts).
 * 5. smtp: examples/smtp.ts vs CPython's smtpd (DebuggingServer), both printing to /dev/null, 10 connections
 *    sending 1,000 messages of 10 KiB one command at a time (bench/load/smtp-client.ts).
 * 6. memory: server RSS per idle connection, 10,000 held open (bench/load/idle-client.ts), ours vs raw node:net;
 *    both also with V8's young generation bounded (`--max-semi-space-size=4`), as such a deployment would run.
 *
 * Each section but tls and smtp also measures two floors: Node's own (raw node:net: the same work by hand,
 * bench/peers/raw-*.ts) and the design's (the raw server with a fiber per connection that every read resumes and a
 * Scope owning the socket, bench/peers/effect-fiber.ts): what the design card's shape costs before the framework
 * does anything. tls measures Node's floor alone (bench/peers/raw-https.ts, over node:tls); smtp measures ours
 * against smtpd alone, so the chart, drawn against Node's floor, has no panel for it (the table has its row).
 *
 * Every server is a child process on 127.0.0.1 with a free port, stopped by PID at the end, on error and on
 * Ctrl-C; every load is bounded in count and time. A section whose peer tool is missing says so and is skipped.
 * The whole run takes about 15 minutes. It prints a table and writes docs/benchmarks.md, docs/benchmarks.svg and
 * the figures behind both, docs/benchmarks.json; `--chart-only` redraws the chart from that file, measuring nothing.
 *
 * The sections are the modules of bench/sections/; what they share (processes, measuring, the report and its chart)
 * is in bench/harness/.
 *
 * Run: `npm run bench`. `BENCH_ONLY=redis,http,tls,echo,smtp,memory,framing` runs some sections (docs are then not written),
 * `BENCH_ROUNDS=3` sets the rounds (default 5: on these shared machines one round can be off by 10%),
 * `BENCH_DEBUG=1` prints every measurement, `BENCH_PROFILE=DIR` runs our servers under `node --cpu-prof` writing
 * into DIR (summarise with bench/profile-summary.ts). Exits 0 when it measured, met or not: it is a report, not a
 * gate.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { svg } from "./harness/chart.ts"
import { ROUNDS } from "./harness/measure.ts"
import { PROFILE, ROOT } from "./harness/processes.ts"
import { machine, markdown, type Report, table, tableRows } from "./harness/report.ts"
import { notes, rows, targetsMet } from "./harness/results.ts"
import * as Framing from "./sections/framing.ts"
import * as Http11 from "./sections/http11.ts"
import * as LineEcho from "./sections/line-echo.ts"
import * as Memory from "./sections/memory.ts"
import * as Redis from "./sections/redis.ts"
import * as Smtp from "./sections/smtp.ts"
import * as Tls from "./sections/tls.ts"

/** The sections in the order they run, by the names BENCH_ONLY takes. */
const sections: Record<string, () => Promise<void>> = {
  redis: Redis.measure,
  http: Http11.measure,
  tls: Tls.measure,
  echo: LineEcho.measure,
  smtp: Smtp.measure,
  memory: Memory.measure,
  framing: Framing.measure
}

const ONLY = process.env.BENCH_ONLY?.split(",").map((s) => s.trim()).filter((s) => s !== "")
const DOCS = join(ROOT, "docs")
/**
 * `--chart-only` redraws docs/benchmarks.svg from docs/benchmarks.json, the rows of the last full run, without
 * measuring: the chart can change without a 15-minute run whose figures would differ.
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
  console.log(`\n${table(tableRows(rows), false)}\n`)
  for (const note of new Set(notes)) console.log(`note: ${note}`)
  console.log(`targets met: ${targetsMet(rows)}; ${Math.round(seconds)} s`)
  if (ONLY !== undefined) {
    console.log("BENCH_ONLY is set: docs/benchmarks.md, .json and .svg not written")
    return
  }
  const report: Report = { date: new Date().toISOString().replace(/\.\d+Z$/, "Z"), rounds: ROUNDS, machine: m, rows }
  mkdirSync(DOCS, { recursive: true })
  writeFileSync(join(DOCS, "benchmarks.md"), markdown(report, seconds))
  writeFileSync(join(DOCS, "benchmarks.json"), JSON.stringify(report, null, 2) + "\n")
  writeFileSync(join(DOCS, "benchmarks.svg"), svg(report))
  console.log("wrote docs/benchmarks.md, docs/benchmarks.json and docs/benchmarks.svg")
}

await main()

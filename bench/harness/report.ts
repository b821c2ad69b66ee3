/**
 * The report of `bench/servers.ts`: the table it prints and docs/benchmarks.md, with the floors each target is
 * read against, and the figures behind both as docs/benchmarks.json.
 */
import { readFileSync } from "node:fs"
import { cpus, release } from "node:os"
import { NODE } from "./processes.ts"
import { commands, FIBER_FLOOR, FLOORS, met, notes, type Row, targetsMet } from "./results.ts"

/** The machine a run measured on, as the report names it. */
export const machine = () => {
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

/** A figure with two decimals below 10, one below 100, none above: about three significant digits. */
export const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))

/** A row's ratio, with a third decimal where two would round it onto its target (0.905 is no "0.90 ≤ 0.9"). */
const ratioText = (r: Row) =>
  r.target !== undefined && r.ratio !== r.target && r.ratio.toFixed(2) === r.target.toFixed(2)
    ? r.ratio.toFixed(3)
    : r.ratio.toFixed(2)

/** The report's rows as table cells. */
export const tableRows = (rows: ReadonlyArray<Row>) =>
  rows.map((r) => [
    r.section,
    r.workload,
    `${r.ours} ${fmt(r.oursValue)}`,
    `${r.peer} ${fmt(r.peerValue)}`,
    r.unit,
    `${ratioText(r)}x`,
    r.rounds.map((x) => x.toFixed(2)).join(" "),
    r.targetText || "(info)",
    r.target === undefined ? "" : met(r) ? "met" : "MISSED"
  ])

const HEADER = ["section", "workload", "ours", "peer", "unit", "ours/peer", "rounds", "target", "verdict"]

/** A padded table: dprint formats Markdown tables this way, so the file stays `dprint check` clean. */
export const table = (cells: ReadonlyArray<ReadonlyArray<string>>, markdown: boolean): string => {
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

/** What the chart is drawn from, written beside the Markdown so that `--chart-only` redraws it unmeasured. */
export interface Report {
  readonly date: string
  readonly rounds: number
  readonly machine: ReturnType<typeof machine>
  readonly rows: ReadonlyArray<Row>
}

/** A command as the report shows it: `node` for this Node, and without the profiler's flags. */
const shown = (argv: ReadonlyArray<string>) =>
  argv.map((a) => (a === NODE ? "node" : a === "" ? "\"\"" : a)).filter((a) => !a.startsWith("--cpu-prof")).join(" ")

/**
 * For each target, what a floor measured against the same peer in the same run: a target below a floor asks
 * for less than that floor costs, whatever a framework does.
 */
const floors = (rows: ReadonlyArray<Row>): Array<string> =>
  rows.flatMap((r) => {
    if (r.target === undefined) return []
    const target = r.target
    // a variant's floor is the floor's same variant: "ours, young gen. 4 MB" against "fiber + Scope, young gen. 4 MB"
    const variant = r.ours.startsWith("ours") ? r.ours.slice("ours".length) : ""
    return FLOORS.flatMap((floorName) => {
      const name = floorName + variant
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

/** docs/benchmarks.md: how it measured, on what, the table, the floors, the commands and the notes. */
export const markdown = (report: Report, seconds: number): string => {
  const m = report.machine
  const againstFloors = floors(report.rows)
  return [
    "# Benchmarks",
    "",
    "Server CPU time per operation (utime + stime from `/proc/PID/stat`; RSS per connection for memory), ours and",
    `the peer side by side in one run, alternating, ${report.rounds} rounds; \`ours/peer\` is the median of the per-round`,
    "ratios (lower is better). On a 2-core machine client and server share the cores, so CPU per operation, not",
    "requests per second, is what compares servers. Absolute figures drift ±15% between runs; ratios from one run",
    "hold. Written by `npm run bench` (`bench/servers.ts`).",
    "",
    `- Date: ${report.date} (the run took ${Math.round(seconds)} s)`,
    `- Machine: ${m.cpu}, ${m.cores} cores; ${m.os}`,
    `- Node ${m.node}`,
    "",
    table(tableRows(report.rows), true),
    "",
    `Targets met: ${targetsMet(report.rows)}.`,
    "",
    ...(againstFloors.length === 0 ? [] : [
      "Floors, measured in the same run: Node's own (raw node:net, a server doing the same work by hand) and the",
      `design's (${FIBER_FLOOR}: that raw server with just what the design asks of every channel, a fiber per`,
      "connection that every read resumes and a Scope owning its socket):",
      "",
      ...againstFloors,
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

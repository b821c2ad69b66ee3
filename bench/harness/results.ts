/**
 * What a run of `bench/servers.ts` gathers for its report: the rows measured, the notes, and the commands that
 * ran. Sections add to them as they go, so that a section failing half-way keeps what it measured.
 */
import type { Subject } from "./processes.ts"

/** The rows that measure a floor rather than a framework: Node's own, and what the design costs by itself. */
export const NODE_FLOOR = "raw node:net"
export const FIBER_FLOOR = "fiber + Scope"
export const FLOORS = [NODE_FLOOR, FIBER_FLOOR]

/** A row of the report: ours and the peer in `unit` per operation, the median ratio, the target if any. */
export interface Row {
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

export const rows: Array<Row> = []
export const notes: Array<string> = []
/** What ran, by section: "role: command". */
export const commands: Array<{ readonly what: string; readonly argv: ReadonlyArray<string>; readonly note?: string }> =
  []

export const met = (row: Row) => row.target === undefined || row.ratio <= row.target

/** "N of M": how many of the rows with a target met it. */
export const targetsMet = (rs: ReadonlyArray<Row>): string => {
  const verdicts = rs.filter((r) => r.target !== undefined)
  return `${verdicts.filter(met).length} of ${verdicts.length}`
}

/** Says that something was skipped, now and in the report's notes. */
export const skipped = (message: string): void => {
  console.log(message)
  notes.push(message)
}

/** Lists what `section` runs: its servers by role, then its loads. */
export const listCommands = (
  section: string,
  servers: ReadonlyArray<Subject>,
  loads: ReadonlyArray<{ readonly argv: ReadonlyArray<string>; readonly note?: string }>
): void => {
  commands.push(
    ...servers.map((s) => ({ what: `${section}, ${s.role}`, argv: s.argv })),
    ...loads.map((load) => ({ what: `${section}, load`, ...load }))
  )
}

/**
 * How `bench/servers.ts` measures: the server's CPU seconds per operation of a load, every server of a
 * section in each of `ROUNDS` rounds, and a row of the report as the median of the per-round ratios ours/peer.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { alive, cpuSeconds, type Server } from "./processes.ts"
import { met, notes, type Row, rows } from "./results.ts"

/** BENCH_ROUNDS: 5 by default, since on these shared machines one round can be off by 10%. */
export const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5))
/** BENCH_DEBUG=1 prints every measurement. */
export const DEBUG = process.env.BENCH_DEBUG !== undefined && process.env.BENCH_DEBUG !== ""

export const median = (xs: ReadonlyArray<number>): number => {
  const s = xs.toSorted((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

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
 * Measures each of `subjects` once a round for `ROUNDS` rounds, rotating which goes first so drift falls on
 * all alike. Returns each subject's per-round figures.
 */
export const inRotation = async <A>(
  subjects: ReadonlyArray<A>,
  measure: (subject: A) => Promise<number>,
  onRound?: (round: number) => void
): Promise<Array<Array<number>>> => {
  const results = subjects.map((): Array<number> => [])
  for (let round = 0; round < ROUNDS; round++) {
    onRound?.(round)
    for (let k = 0; k < subjects.length; k++) {
      const i = (k + round) % subjects.length
      results[i].push(await measure(subjects[i]))
    }
  }
  return results
}

const sayRound = (round: number) => {
  if (DEBUG) console.log(`  round ${round + 1}`)
}

/** Server CPU per operation of `load` for every server, in rotation, after one warm-up load each (JIT). */
export const alternate = async (
  servers: ReadonlyArray<Server>,
  load: (server: Server) => Promise<number>,
  warmup: (server: Server) => Promise<unknown>
): Promise<Array<Array<number>>> => {
  for (const server of servers) await warmup(server)
  return inRotation(servers, (server) => cpuPerOp(server, load), sayRound)
}

/** Adds the row of `ours` against `peer`, per-round figures measured in the same rounds, scaled to its unit. */
export const addRow = (
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

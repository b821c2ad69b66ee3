/**
 * The framing section of `bench/servers.ts`: `bench/framing.ts` (`Framing.frames(Terminator.lf)` as an Effect
 * Stream against a hand-written `Buffer.indexOf` splitter, in memory, 64 KiB chunks), as time per 4 MiB of
 * 32-byte lines. The target, at least 0.9x the hand loop's throughput, is at most 1.11x its time.
 */
import { execFileSync } from "node:child_process"
import { addRow } from "../harness/measure.ts"
import { ours, ROOT } from "../harness/processes.ts"
import { listCommands } from "../harness/results.ts"

export const measure = async () => {
  console.log("\nframing: Framing.frames(Terminator.lf) vs the hand loop, in memory, 64 KiB chunks")
  const argv = ours("bench/framing.ts", "--json")
  listCommands("framing", [{ name: "ours and the hand loop", role: "ours and the hand loop", argv }], [])
  const out = execFileSync(argv[0], argv.slice(1), { cwd: ROOT, encoding: "utf8", timeout: 300_000 })
  const last = out.trim().split("\n").at(-1) ?? ""
  const { handMs, oursMs } = JSON.parse(last) as { oursMs: Array<number>; handMs: Array<number> }
  addRow(
    {
      section: "framing",
      workload: "64 KiB chunks of 32-byte lines, in memory",
      ours: "ours",
      peer: "hand loop",
      unit: "ms/4 MiB",
      target: 1.11
    },
    oursMs,
    handMs,
    1
  )
}

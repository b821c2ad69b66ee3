/**
 * Summarises a V8 `.cpuprofile` by self time per function, the first thing to read after
 * `node --cpu-prof bench/framing.ts`.
 *
 * Run: `node bench/profile-summary.ts CPU.<...>.cpuprofile [top=25]`
 */
import { readFileSync } from "node:fs"

interface Node {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
}
interface Profile {
  readonly nodes: ReadonlyArray<Node>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const [file, top = "25"] = process.argv.slice(2)
if (file === undefined) {
  console.error("usage: node bench/profile-summary.ts <file.cpuprofile> [top]")
  process.exit(2)
}
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile
const nodes = new Map(profile.nodes.map((n) => [n.id, n]))

// Each sample is charged to the node on top of the stack: its self time.
const selfUs = new Map<string, number>()
let total = 0
profile.samples.forEach((id, i) => {
  const frame = nodes.get(id)?.callFrame
  const dt = profile.timeDeltas[i] ?? 0
  const where = frame === undefined ? "?" : frame.url.replace(/^.*\/(node_modules|src|bench)\//, "$1/")
  const key = `${frame?.functionName || "(anonymous)"} ${where}:${(frame?.lineNumber ?? -1) + 1}`
  selfUs.set(key, (selfUs.get(key) ?? 0) + dt)
  total += dt
})

for (const [key, us] of [...selfUs].toSorted((a, b) => b[1] - a[1]).slice(0, Number(top))) {
  console.log(`${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${key}`)
}
console.log(`${(total / 1000).toFixed(1).padStart(9)} ms total`)

/**
 * Framing throughput: `Framing.frames(Terminator.lf)` run as an Effect Stream, against a hand-written
 * `Buffer.indexOf` splitter doing the same cut (views within a chunk, a copy only of what spans chunks).
 *
 * Input: 4 MiB of 32-byte lines (31 bytes + "\n"), delivered (a) in 64 KiB chunks and (b) in random 1-7 byte
 * chunks (seeded, so every run sees the same cuts), built before timing. Both sides count frames and sum their
 * lengths, so each touches every frame; the totals must agree or the script exits 1. After a warm-up the two
 * sides alternate for several rounds; medians are reported as MiB/s, with ours/hand (1.0 = parity, higher is
 * better). `Stream.fromIterable` hands the chunk array over as one upstream batch: this measures the framing
 * and the Stream's per-frame cost, not one pull per socket read.
 *
 * Run: `npm run bench:framing` (or `node bench/framing.ts`; `node --cpu-prof bench/framing.ts` to profile;
 * `BENCH_DEBUG=1` prints every round; `--json` ends with one JSON line of the 64 KiB rounds, for `npm run bench`). Exits 0 unless the two sides disagree: it is a report, not a gate.
 * Other load on the machine shows up as noise; run it twice before reading much into a few percent.
 */
import { Effect, Stream } from "effect"
import { Buffer } from "node:buffer"
import { cpus } from "node:os"
import { performance } from "node:perf_hooks"
import { Framing, Terminator } from "../src/index.ts"

const LINE = 32
const TOTAL = 4 * 1024 * 1024
const BIG_CHUNK = 64 * 1024
const WARMUP = 10
const ROUNDS = 21
const TARGET = 0.9

interface Totals {
  frames: number
  bytes: number
}

/** mulberry32: tiny, seedable, good enough to pick chunk sizes. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const makeInput = (): Buffer => {
  const rand = prng(42)
  const data = Buffer.allocUnsafe(TOTAL)
  for (let i = 0; i < TOTAL; i++) {
    data[i] = i % LINE === LINE - 1 ? 10 : 0x21 + Math.floor(rand() * 94)
  }
  return data
}

const fixedChunks = (data: Buffer, size: number): Array<Buffer> => {
  const chunks: Array<Buffer> = []
  for (let i = 0; i < data.length; i += size) chunks.push(data.subarray(i, i + size))
  return chunks
}

const randomChunks = (data: Buffer, min: number, max: number, seed: number): Array<Buffer> => {
  const rand = prng(seed)
  const chunks: Array<Buffer> = []
  for (let i = 0; i < data.length;) {
    const n = min + Math.floor(rand() * (max - min + 1))
    chunks.push(data.subarray(i, i + n))
    i += n
  }
  return chunks
}

const ours = (chunks: ReadonlyArray<Buffer>): Totals =>
  Effect.runSync(
    Stream.fromIterable(chunks).pipe(
      Framing.frames(Terminator.lf),
      Stream.runFold((): Totals => ({ frames: 0, bytes: 0 }), (acc, frame) => {
        acc.frames++
        acc.bytes += frame.bytes.length
        return acc
      })
    )
  )

/** What one would write by hand: views within a chunk, a copy only of the pieces of a frame that spans chunks. */
const hand = (chunks: ReadonlyArray<Buffer>): Totals => {
  let frames = 0
  let bytes = 0
  let pending: Array<Buffer> = []
  let pendingLen = 0
  for (let c = 0; c < chunks.length; c++) {
    const chunk = chunks[c]
    let pos = 0
    let k = chunk.indexOf(10)
    if (k >= 0 && pendingLen > 0) {
      pending.push(chunk.subarray(0, k))
      const frame = Buffer.concat(pending, pendingLen + k)
      frames++
      bytes += frame.length
      pending = []
      pendingLen = 0
      pos = k + 1
      k = chunk.indexOf(10, pos)
    }
    while (k >= 0) {
      const frame = chunk.subarray(pos, k)
      frames++
      bytes += frame.length
      pos = k + 1
      k = chunk.indexOf(10, pos)
    }
    if (pos < chunk.length) {
      pending.push(pos === 0 ? chunk : chunk.subarray(pos))
      pendingLen += chunk.length - pos
    }
  }
  if (pendingLen > 0) {
    frames++
    bytes += Buffer.concat(pending, pendingLen).length
  }
  return { frames, bytes }
}

const time = (f: () => Totals): { ms: number; totals: Totals } => {
  const start = performance.now()
  const totals = f()
  return { ms: performance.now() - start, totals }
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = xs.toSorted((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

const sameTotals = (label: string, a: Totals, b: Totals): void => {
  if (a.frames !== b.frames || a.bytes !== b.bytes) {
    console.error(`${label}: outputs disagree: ours ${JSON.stringify(a)}, hand ${JSON.stringify(b)}`)
    process.exit(1)
  }
}

const measure = (label: string, chunks: ReadonlyArray<Buffer>) => {
  const expected: Totals = { frames: TOTAL / LINE, bytes: TOTAL - TOTAL / LINE }
  sameTotals(`${label} (expected)`, ours(chunks), expected)
  sameTotals(`${label} (expected)`, hand(chunks), expected)
  for (let i = 0; i < WARMUP; i++) {
    ours(chunks)
    hand(chunks)
  }
  const oursMs: Array<number> = []
  const handMs: Array<number> = []
  for (let i = 0; i < ROUNDS; i++) {
    // Alternate, and swap which goes first, so drift and GC debt fall on both sides alike.
    let a: ReturnType<typeof time>
    let b: ReturnType<typeof time>
    if (i % 2 === 0) {
      a = time(() => ours(chunks))
      b = time(() => hand(chunks))
    } else {
      b = time(() => hand(chunks))
      a = time(() => ours(chunks))
    }
    sameTotals(label, a.totals, b.totals)
    oursMs.push(a.ms)
    handMs.push(b.ms)
  }
  if (process.env.BENCH_DEBUG) {
    console.log(`${label} ours/hand ms:`, oursMs.map((x, i) => `${x.toFixed(1)}/${handMs[i].toFixed(1)}`).join(" "))
  }
  const mib = TOTAL / (1024 * 1024)
  const oursRate = mib / (median(oursMs) / 1000)
  const handRate = mib / (median(handMs) / 1000)
  return { label, chunks: chunks.length, oursRate, handRate, ratio: oursRate / handRate, oursMs, handMs }
}

const data = makeInput()
const deliveries = [
  { label: "64 KiB chunks", chunks: fixedChunks(data, BIG_CHUNK) },
  { label: "1-7 byte chunks", chunks: randomChunks(data, 1, 7, 7) }
]

console.log(`node ${process.version}, ${cpus()[0]?.model ?? "unknown CPU"}`)
console.log(`input: ${TOTAL / (1024 * 1024)} MiB of ${LINE}-byte lines, ${WARMUP} warm-up + ${ROUNDS} rounds, medians`)
console.log("")
const rows = deliveries.map((d) => measure(d.label, d.chunks))
const row = (cells: ReadonlyArray<string>) =>
  console.log(`${cells[0].padEnd(16)} ${cells[1].padStart(8)} ${cells.slice(2).map((c) => c.padStart(11)).join(" ")}`)
row(["delivery", "chunks", "ours MiB/s", "hand MiB/s", "ours/hand"])
for (const r of rows) {
  row([r.label, String(r.chunks), r.oursRate.toFixed(1), r.handRate.toFixed(1), r.ratio.toFixed(2)])
}
console.log("")
console.log(`target (>= ${TARGET}x on 64 KiB chunks): ${rows[0].ratio >= TARGET ? "met" : "MISSED"}`)
if (process.argv.includes("--json")) {
  console.log(JSON.stringify({ oursMs: rows[0].oursMs, handMs: rows[0].handMs }))
}

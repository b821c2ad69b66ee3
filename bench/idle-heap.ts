/**
 * What an idle connection holds, and what it costs, against a raw `node:net` server holding the same sockets in
 * the same way: the configuration the memory section of bench/servers.ts measures (bench/servers/echo-lines.ts's
 * protocol and options, without the frame timeout; bench/peers/raw-line-echo.ts's reader on a plain
 * `Net.createServer`), N idle connections opened by bench/load/idle-client.ts in a process of its own, so that
 * the server's process holds only the server's side. Every measurement runs in a fresh child of this script.
 *
 * It prints, for each server:
 * - heap per connection by what holds it: a heap snapshot taken after full collections with N connections open,
 *   less one taken before they opened (after a warm-up round of 500 connections opened and closed, so that
 *   compiled code and caches mostly cancel), self sizes summed per constructor (objects; a plain object by its
 *   keys), function name and file (closures), or V8's own kind (contexts by their variables, internal arrays by
 *   what holds them, strings, code), divided by N;
 * - heapUsed per connection, after full collections (the same two moments);
 * - RSS per connection as the memory section measures it (after the accepts settle, no forced collection), for
 *   RSS_N connections, at V8's defaults and with --max-semi-space-size=4: the median of 3 rounds, raw and ours
 *   alternating (one round varies by some 10%).
 *
 * Run: npm run bench:idle-heap [-- N [RSS_N]]   (defaults 2000 and the memory section's 10000; needs
 * `ulimit -n` above RSS_N; 0 skips RSS). Rows under 4 bytes per connection are left out of the table.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import * as V8 from "node:v8"
import { reader } from "./peers/raw-line-echo.ts"

type Subject = "raw" | "ours"
const SOURCE = "--conditions=@effect-asynchat/source"
const SMALL_YOUNG_GENERATION = "--max-semi-space-size=4"
const WARM_UP = 500
const RSS_ROUNDS = 3
const MIN_BYTES = 4

// --- the child: one server, one measurement ------------------------------------------------------------------

/** A server of `subject` on 127.0.0.1, and how many connections it holds now. It runs until the process exits. */
interface Running {
  readonly port: number
  readonly count: () => Promise<number>
}

/** bench/peers/listen.ts's server with raw-line-echo's reader, on a port of the system's choosing. */
const startRaw = (): Promise<Running> =>
  new Promise((resolve) => {
    const server = Net.createServer((socket) => {
      socket.on("error", () => socket.destroy())
      socket.on("data", reader(socket))
    })
    server.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, () =>
      resolve({
        port: (server.address() as Net.AddressInfo).port,
        // Node's own count: no listener of ours on the sockets
        count: () => new Promise((done, fail) => server.getConnections((e, n) => (e ? fail(e) : done(n))))
      }))
  })

/**
 * bench/servers/echo-lines.ts's server, without the frame timeout. Effect is imported here, not by the module: a
 * raw server's process loads none of it, as in the memory section, so that the pages its loading leaves behind
 * do not take the raw server's first connections.
 */
const startOurs = async (): Promise<Running> => {
  const { Duration, Effect } = await import("effect")
  const { ChatServer, Listener } = await import("effect-asynchat")
  const { EchoLines } = await import("./servers/echo-lines.ts")
  return new Promise((resolve, reject) => {
    Effect.scoped(Effect.gen(function*() {
      const listener = yield* Listener.makeTcp({ host: "127.0.0.1", port: 0, backlog: 4096 })
      const server = yield* ChatServer.make(EchoLines, {
        maxFrameLength: 1024,
        idleTimeout: Duration.infinity,
        frameTimeout: Duration.infinity,
        maxConnections: 100_000
      }).pipe(Effect.provideService(Listener.Listener, listener))
      const port = listener.address._tag === "Inet" ? listener.address.port : 0
      const run = Effect.runPromiseWith(yield* Effect.context<never>())
      resolve({ port, count: () => run(server.count) })
      return yield* Effect.never
    })).pipe(Effect.runPromise).catch(reject)
  })
}

/** Opens `n` idle connections to `server` from another process, and resolves once the server holds them all. */
const connect = async (server: Running, n: number): Promise<ChildProcess> => {
  const client = spawn(process.execPath, ["bench/load/idle-client.ts", String(server.port), String(n), "200"], {
    stdio: ["ignore", "ignore", "inherit"]
  })
  while ((await server.count()) < n) {
    if (client.exitCode !== null) throw new Error("idle-client exited")
    await sleep(50)
  }
  await sleep(2000) // let allocations that follow an accept settle, as the memory section does
  return client
}

const disconnect = async (server: Running, client: ChildProcess): Promise<void> => {
  client.kill("SIGKILL")
  while ((await server.count()) > 0) await sleep(50)
  await sleep(500)
}

const retained = (): number => {
  for (let i = 0; i < 3; i++) globalThis.gc!()
  return process.memoryUsage().heapUsed
}

/** Heap snapshots and heapUsed with 0 and `n` connections: JSON on stdout for the parent. */
const heapChild = async (subject: Subject, n: number) => {
  const server = subject === "raw" ? await startRaw() : await startOurs()
  await disconnect(server, await connect(server, WARM_UP))
  // heapUsed is read after each snapshot: taking one drops what V8 keeps while it can (compiled code, caches), so a
  // heapUsed read before it would count that as the connections' (megabytes, negative per connection)
  const before = V8.writeHeapSnapshot(join(tmpdir(), `idle-heap-${subject}-0-${process.pid}.heapsnapshot`))
  const heap0 = retained()
  const client = await connect(server, n)
  const after = V8.writeHeapSnapshot(join(tmpdir(), `idle-heap-${subject}-1-${process.pid}.heapsnapshot`))
  const heap1 = retained()
  client.kill("SIGKILL")
  console.log(JSON.stringify({ heap0, heap1, before, after }))
  process.exit(0)
}

/** RSS with 0 and `n` connections, as the memory section measures it: JSON on stdout for the parent. */
const rssChild = async (subject: Subject, n: number) => {
  const server = subject === "raw" ? await startRaw() : await startOurs()
  await sleep(1000)
  const rss0 = process.memoryUsage().rss
  const client = await connect(server, n)
  const rss1 = process.memoryUsage().rss
  client.kill("SIGKILL")
  console.log(JSON.stringify({ rss0, rss1 }))
  process.exit(0)
}

// --- heap snapshots ------------------------------------------------------------------------------------------

interface Snapshot {
  readonly snapshot: {
    readonly meta: {
      readonly node_fields: ReadonlyArray<string>
      readonly node_types: readonly [ReadonlyArray<string>, ...ReadonlyArray<unknown>]
      readonly edge_fields: ReadonlyArray<string>
      readonly edge_types: readonly [ReadonlyArray<string>, ...ReadonlyArray<unknown>]
      readonly location_fields: ReadonlyArray<string>
    }
  }
  readonly nodes: ReadonlyArray<number>
  readonly edges: ReadonlyArray<number>
  readonly locations: ReadonlyArray<number>
  readonly strings: ReadonlyArray<string>
}

/** Per group: bytes (self sizes) and objects. */
type Groups = Map<string, { bytes: number; count: number }>

/** A script's URL, short: this package's files from its root, effect's from its package. */
const shortScript = (url: string): string =>
  url.replace(/^file:\/\/.*?\/node_modules\//, "").replace(/^file:\/\/.*?\/(src|bench|test)\//, "$1/")
    .replace(/\/dist\//, "/")

/** Names as a key: the first six. */
const list = (names: ReadonlyArray<string>) => `{${names.slice(0, 6).join(", ")}${names.length > 6 ? ", ..." : ""}}`

/**
 * Self sizes of a snapshot's nodes, grouped: objects by constructor (a plain object by its keys), closures by
 * function name and where they were made, contexts by their variables, V8's internal arrays by what holds them
 * (an object's properties or elements), strings, numbers and code each as one group.
 */
const groupsOf = (path: string): Groups => {
  const s = JSON.parse(readFileSync(path, "utf8")) as Snapshot
  rmSync(path)
  const { edge_fields, edge_types, location_fields, node_fields, node_types } = s.snapshot.meta
  const nf = node_fields.length
  const ef = edge_fields.length
  const [nType, nName, nSize, nEdges] = ["type", "name", "self_size", "edge_count"].map((f) => node_fields.indexOf(f))
  const [eType, eName, eTo] = ["type", "name_or_index", "to_node"].map((f) => edge_fields.indexOf(f))
  const types = node_types[0]
  const edgeTypes = edge_types[0]
  const nodes = s.nodes
  const count = nodes.length / nf
  const typeOf = (i: number) => types[nodes[i * nf + nType]]
  const nameOf = (i: number) => s.strings[nodes[i * nf + nName]]
  const firstEdge = new Int32Array(count + 1)
  for (let i = 0, e = 0; i < count; i++, e += nodes[(i - 1) * nf + nEdges] * ef) firstEdge[i] = e
  firstEdge[count] = s.edges.length
  /** The names of `i`'s edges of `type`, in order. */
  const edgeNames = (i: number, type: string): Array<string> => {
    const names: Array<string> = []
    for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += ef) {
      if (edgeTypes[s.edges[e + eType]] === type) names.push(s.strings[s.edges[e + eName]])
    }
    return names
  }
  const target = (i: number, name: string): number => {
    for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += ef) {
      const t = edgeTypes[s.edges[e + eType]]
      if (t !== "element" && t !== "hidden" && s.strings[s.edges[e + eName]] === name) return s.edges[e + eTo] / nf
    }
    return -1
  }
  // the first object or closure holding each node by a strong edge
  const holder = new Int32Array(count).fill(-1)
  for (let i = 0; i < count; i++) {
    const kind = typeOf(i)
    if (kind !== "object" && kind !== "closure") continue
    for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += ef) {
      const to = s.edges[e + eTo] / nf
      if (holder[to] < 0 && edgeTypes[s.edges[e + eType]] !== "weak") holder[to] = i
    }
  }
  const lines = new Map<number, string>()
  const lf = location_fields.length
  const [lObject, lLine] = ["object_index", "line"].map((f) => location_fields.indexOf(f))
  for (let k = 0; k < s.locations.length; k += lf) {
    const closure = s.locations[k + lObject] / nf
    const script = target(target(closure, "shared"), "script")
    const where = script < 0 ? "" : shortScript(nameOf(script))
    lines.set(closure, `${where}:${s.locations[k + lLine] + 1}`)
  }
  const closureKey = (i: number) => `${nameOf(i) || "(anonymous)"}() ${lines.get(i) ?? ""}`
  const objectKey = (i: number) => {
    const name = nameOf(i)
    if (name === "system / Context") return `context ${list(edgeNames(i, "context"))}`
    if (name !== "Object") return name
    return list(edgeNames(i, "property").filter((k) => k !== "__proto__"))
  }
  const keyOf = (i: number): string => {
    const kind = typeOf(i)
    const name = nameOf(i)
    switch (kind) {
      case "object":
        return objectKey(i)
      case "closure":
        return closureKey(i)
      case "native":
        return `native ${name}`
      case "string":
      case "concatenated string":
      case "sliced string":
        return "(string)"
      case "number":
        return "(heap number)"
      case "code":
        return "(code)"
      case "hidden":
      case "array":
      case "object shape": {
        const by = holder[i]
        if (by < 0) return name || "(internal)"
        return `${name || "(internal)"} of ${typeOf(by) === "closure" ? closureKey(by) : objectKey(by)}`
      }
      default:
        return `(${kind}) ${name}`
    }
  }
  const groups: Groups = new Map()
  for (let i = 0; i < count; i++) {
    const size = nodes[i * nf + nSize]
    if (size === 0) continue
    const key = keyOf(i)
    const group = groups.get(key)
    if (group === undefined) groups.set(key, { bytes: size, count: 1 })
    else {
      group.bytes += size
      group.count++
    }
  }
  return groups
}

/** What `after` holds beyond `before`, per connection. */
const perConnection = (before: Groups, after: Groups, n: number): Groups => {
  const diff: Groups = new Map()
  for (const [key, { bytes, count }] of after) {
    const base = before.get(key) ?? { bytes: 0, count: 0 }
    diff.set(key, { bytes: (bytes - base.bytes) / n, count: (count - base.count) / n })
  }
  for (const [key, { bytes, count }] of before) {
    if (!after.has(key)) diff.set(key, { bytes: -bytes / n, count: -count / n })
  }
  return diff
}

// --- the parent: runs the children, prints the tables --------------------------------------------------------

const runChild = (args: ReadonlyArray<string>, flags: ReadonlyArray<string> = []): unknown =>
  JSON.parse(
    execFileSync(process.execPath, [SOURCE, "--expose-gc", ...flags, import.meta.filename, "child", ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      maxBuffer: 64 * 1024 * 1024
    }).trim().split("\n").at(-1)!
  )

const pad = (s: string, n: number) => s.padStart(n)
const fixed = (x: number, digits = 0) => x.toFixed(digits)

const main = (n: number, rssN: number) => {
  const heap = { raw: { total: 0, groups: new Map() as Groups }, ours: { total: 0, groups: new Map() as Groups } }
  for (const subject of ["raw", "ours"] as const) {
    const r = runChild(["heap", subject, String(n)]) as { heap0: number; heap1: number; before: string; after: string }
    heap[subject] = { total: (r.heap1 - r.heap0) / n, groups: perConnection(groupsOf(r.before), groupsOf(r.after), n) }
  }
  const keys = [...new Set([...heap.ours.groups.keys(), ...heap.raw.groups.keys()])]
  const row = (key: string) => {
    const o = heap.ours.groups.get(key) ?? { bytes: 0, count: 0 }
    const r = heap.raw.groups.get(key) ?? { bytes: 0, count: 0 }
    return { key, ours: o.bytes, oursCount: o.count, raw: r.bytes, rawCount: r.count }
  }
  const rows = keys.map(row).filter((r) => Math.abs(r.ours) >= MIN_BYTES || Math.abs(r.raw) >= MIN_BYTES)
  rows.sort((a, b) => b.ours - b.raw - (a.ours - a.raw) || b.ours - a.ours)
  const sum = (side: "ours" | "raw") => [...heap[side].groups.values()].reduce((t, g) => t + g.bytes, 0)
  console.log(`\nheap per idle connection, ${n} connections (bytes; objects per connection in brackets)\n`)
  console.log(`${pad("ours", 16)}${pad("raw", 16)}${pad("ours-raw", 10)}  held by`)
  for (const r of rows) {
    console.log(
      `${pad(fixed(r.ours), 7)} [${pad(fixed(r.oursCount, 2), 5)}]${pad(fixed(r.raw), 7)} [${
        pad(fixed(r.rawCount, 2), 5)
      }]${pad(fixed(r.ours - r.raw), 10)}  ${r.key}`
    )
  }
  const [ours, raw] = [sum("ours"), sum("raw")]
  console.log(`${pad(fixed(ours), 7)}${pad(fixed(raw), 16)}${pad(fixed(ours - raw), 17)}  total of the snapshot`)
  console.log(
    `\nheapUsed per connection: ours ${fixed(heap.ours.total)} B, raw ${fixed(heap.raw.total)} B, ` +
      `ours - raw ${fixed(heap.ours.total - heap.raw.total)} B (${
        fixed((heap.ours.total - heap.raw.total) / 1024, 2)
      } KiB)`
  )
  if (rssN === 0) return
  console.log(`\nRSS per connection, ${rssN} connections (KiB)`)
  for (const flags of [[], [SMALL_YOUNG_GENERATION]]) {
    const rounds = { raw: [] as Array<number>, ours: [] as Array<number> }
    for (let i = 0; i < RSS_ROUNDS; i++) {
      for (const subject of ["raw", "ours"] as const) {
        const { rss0, rss1 } = runChild(["rss", subject, String(rssN)], flags) as { rss0: number; rss1: number }
        rounds[subject].push((rss1 - rss0) / 1024 / rssN)
      }
    }
    const [r, o] = [median(rounds.raw), median(rounds.ours)]
    console.log(
      `  ${flags.length === 0 ? "V8 defaults" : SMALL_YOUNG_GENERATION}: ours ${fixed(o, 2)}, raw ${fixed(r, 2)}, ` +
        `ours/raw ${fixed(o / r, 2)}x`
    )
  }
}

const median = (xs: ReadonlyArray<number>): number => xs.toSorted((a, b) => a - b)[xs.length >> 1]

const [mode, ...rest] = process.argv.slice(2)
if (mode === "child") {
  const [what, subject, count] = rest as ["heap" | "rss", Subject, string]
  await (what === "heap" ? heapChild : rssChild)(subject, Number(count))
} else {
  main(Number(mode ?? 2000), Number(rest[0] ?? 10_000))
}

/**
 * The chart of `bench/servers.ts`, docs/benchmarks.svg: one panel per section, every server as a ratio to Node's
 * floor (raw node:net), drawn from the report's rows alone so that `--chart-only` can redraw it unmeasured.
 */
import { median } from "./measure.ts"
import { fmt, type Report } from "./report.ts"
import { FIBER_FLOOR, met, NODE_FLOOR, type Row } from "./results.ts"

const escapeXml = (s: string) => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")

/** A server against one Node's floor: the median of its per-round ratios, and its own median figure. */
interface Figure {
  readonly name: string
  readonly ratio: number
  readonly value: number
}

interface Target {
  /** Where the target falls against Node's floor. */
  readonly at: number
  readonly text: string
  readonly met: boolean
}

/** One workload against one Node's floor (memory has a second: every server with a bounded young generation). */
interface Group {
  readonly workload: string
  readonly floor: number
  readonly ours: ReadonlyArray<Figure & { readonly targets: ReadonlyArray<Target> }>
  readonly design: Figure | undefined
  readonly peers: ReadonlyArray<Figure>
}

/**
 * Per-round ratios a/b among one workload's rows: measured, inverted, or through a third server both were
 * measured against, which cancels round by round since all ran in the same rounds.
 */
const perRound = (rs: ReadonlyArray<Row>, a: string, b: string): ReadonlyArray<number> | undefined => {
  const direct = rs.find((r) => r.ours === a && r.peer === b)
  if (direct !== undefined) return direct.rounds
  const inverse = rs.find((r) => r.ours === b && r.peer === a)
  if (inverse !== undefined) return inverse.rounds.map((x) => 1 / x)
  for (const r of rs.filter((r) => r.ours === a)) {
    const other = rs.find((s) => s.ours === b && s.peer === r.peer)
    if (other !== undefined) return r.rounds.map((x, i) => x / other.rounds[i])
  }
  return undefined
}

const peerName = (name: string) => (name === "asynchat" ? "CPython's asynchat" : name)

const groupsOf = (rs: ReadonlyArray<Row>): Array<Group> => {
  const names = [...new Set(rs.flatMap((r) => [r.ours, r.peer]))]
  const valueOf = (name: string) => {
    const r = rs.find((r) => r.ours === name || r.peer === name)
    return r === undefined ? NaN : r.ours === name ? r.oursValue : r.peerValue
  }
  return names.filter((n) => n.startsWith(NODE_FLOOR)).map((floor) => {
    // ", young gen. 4 MB": what every server of the group ran with, said once in the group's title
    const variant = floor.slice(NODE_FLOOR.length)
    const ratioOf = (name: string) => median(perRound(rs, name, floor) ?? [NaN])
    const figure = (name: string): Figure => ({
      name: peerName(variant !== "" && name.endsWith(variant) ? name.slice(0, -variant.length) : name),
      ratio: ratioOf(name),
      value: valueOf(name)
    })
    const others = names.filter((n) => !n.startsWith(NODE_FLOOR) && perRound(rs, n, floor) !== undefined)
    const ours = others.filter((n) => n.startsWith("ours"))
    const design = others.find((n) => n.startsWith(FIBER_FLOOR))
    // A target stated against a peer is drawn where it falls against Node's floor: target x peer / floor.
    const targets = (name: string) =>
      rs.filter((r) => r.ours === name && r.target !== undefined).map((r): Target => {
        const at = (r.target ?? NaN) * (r.peer === floor ? 1 : ratioOf(r.peer))
        const against = r.peer === floor ? " Node's floor" : ` ${peerName(r.peer)} (${at.toFixed(2)}x Node's floor)`
        return { at, text: `${r.targetText}${against}`, met: met(r) }
      }).filter((t) => Number.isFinite(t.at))
    return {
      workload: variant === "" ? rs[0].workload : `${rs[0].workload}, every server with${variant.slice(1)}`,
      floor: valueOf(floor),
      ours: ours.map((name) => ({ ...figure(name), targets: targets(name) })),
      design: design === undefined ? undefined : figure(design),
      peers: others.filter((n) => !ours.includes(n) && n !== design).map(figure)
    }
  })
}

const COLOR = { ours: "#2f64ad", variant: "#8db0de", design: "#f08c00", peer: "#9a9a9a" }
const VERDICT = { met: "#2e7d32", missed: "#c62828" }
const PARITY = `stroke="#222" stroke-dasharray="4 3" stroke-width="1.5"`
const TICK = `stroke="#111" stroke-width="3"`

const text = (x: number, y: number, s: string, attrs = "", tail = "") =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}"${attrs}>${escapeXml(s)}${tail}</text>`
const line = (x1: number, y1: number, x2: number, y2: number, attrs: string) =>
  `<line x1="${x1.toFixed(1)}" y1="${y1.toFixed(1)}" x2="${x2.toFixed(1)}" y2="${y2.toFixed(1)}" ${attrs}/>`
const rect = (x: number, y: number, w: number, h: number, fill: string) =>
  `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(w, 0).toFixed(1)}" height="${h}" fill="${fill}"/>`
/** A ◆ centred on (x, y): the design's floor, on the main bar and in its own row. */
const diamond = (x: number, y: number, r = 6) =>
  `<path d="M${x.toFixed(1)} ${y - r}l${r} ${r}l${-r} ${r}l${-r} ${-r}z" fill="${COLOR.design}" stroke="#333"/>`

const LEGEND: ReadonlyArray<readonly [string, string]> = [
  [rect(24, -7, 28, 14, COLOR.ours), "ours: our server ÷ Node's floor; beside each bar its ratio and absolute figure"],
  [rect(24, -4, 28, 8, COLOR.variant), "ours with its frame timeout on"],
  [line(38, -9, 38, 9, PARITY), "1x, parity: Node's floor (raw node:net doing the same work by hand)"],
  [diamond(38, 0), "the design's floor (fiber + Scope: a fiber per connection and a Scope owning its socket)"],
  [line(38, -9, 38, 9, TICK), "a target for ours, drawn where it falls on this scale; its row says met or missed"],
  [rect(24, -3, 28, 6, COLOR.peer), "a peer, for information: redis-server, node:http, CPython's asynchat"]
]

/**
 * One panel per section, one group of rows per workload, each row one server against Node's floor: a bar for
 * ours (the first carries the design's floor and the targets as marks too), a thin grey bar for a peer, a
 * mark for a floor or a target. Each label has its row to itself, after the row's last mark, so none overlaps.
 */
export const svg = (report: Report): string => {
  const width = 940
  const plot = { left: 180, width: 560 }
  const m = report.machine
  let y = 0
  const out = [
    text(
      16,
      y += 26,
      "effect-asynchat servers against Node's floor (lower is better)",
      ` font-size="17" font-weight="bold"`
    ),
    text(
      16,
      y += 20,
      "Server CPU time per operation (memory: RSS per idle connection) divided by raw node:net's on the same work," +
        ` the median of ${report.rounds} per-round ratios.`
    ),
    text(
      16,
      y += 17,
      `${report.date}; ${m.cpu}, ${m.cores} cores; Node ${m.node}. Absolute figures drift ±15% between runs,` +
        " ratios from one run hold.",
      ` fill="#555"`
    ),
    `<rect x="12" y="${y += 12}" width="${width - 24}" height="${LEGEND.length * 20 + 12}" fill="#f6f8fa"` +
    ` stroke="#d0d7de"/>`
  ]
  y += 6
  for (const [mark, label] of LEGEND) {
    out.push(`<g transform="translate(0 ${(y += 20) - 4})">${mark}</g>`, text(64, y, label))
  }
  y += 16
  for (const section of new Set(report.rows.map((r) => r.section))) {
    const rs = report.rows.filter((r) => r.section === section)
    const workloads = [...new Set(rs.map((r) => r.workload))]
    const groups = workloads.flatMap((w) => groupsOf(rs.filter((r) => r.workload === w)))
    if (groups.length === 0) continue
    const unit = rs[0].unit
    const marks = groups.flatMap((g) => [
      ...g.ours.flatMap((o) => [o.ratio, ...o.targets.map((t) => t.at)]),
      ...g.peers.map((p) => p.ratio),
      g.design?.ratio ?? 0
    ])
    // Ticks every 0.5x up to 4x, every 1x beyond, where a finer grid would only add lines.
    const top = Math.max(1, ...marks.filter(Number.isFinite)) * 1.05
    const step = top > 4 ? 1 : 0.5
    const max = Math.ceil(top / step) * step
    const x = (v: number) => plot.left + (v / max) * plot.width
    const what = unit === "KiB/conn"
      ? "server RSS per idle connection"
      : `server CPU time per ${unit === "µs/req" ? "request" : "line"}`
    const panelTop = y += 14
    const grid: Array<string> = [] // drawn first, behind the rows
    const body = [
      text(24, y += 22, `${section}: ${workloads.join(", ")}`, ` font-size="15" font-weight="bold"`),
      text(24, y += 17, `${what} (${unit}) as a ratio to Node's floor`, ` fill="#555"`)
    ]
    const plotTop = y + 6
    for (const g of groups) {
      // a group's own title only where the panel's does not say it already
      if (groups.length > 1) body.push(text(24, y += 26, g.workload, ` font-weight="bold"`))
      else y += 8
      const groupTop = y + 6
      /** A row of `pitch` px: its name at the left, `draw(centre)`, its label after `end` (before it near the edge). */
      const row = (name: string, pitch: number, draw: (c: number) => string, end: number, label: string, tail = "") => {
        const c = (y += pitch) - pitch / 2 + 2
        const after = end + 7 + label.length * 7 <= width - 12
        body.push(
          text(plot.left - 10, c + 4, name, ` text-anchor="end"${pitch > 20 ? ` font-weight="bold"` : ""}`),
          draw(c),
          text(after ? end + 7 : end - 9, c + 4, label, ` class="halo"${after ? "" : ` text-anchor="end"`}`, tail)
        )
      }
      const figures = (f: Figure) => `${f.ratio.toFixed(2)}x · ${fmt(f.value)} ${unit}`
      g.ours.forEach((o, i) => {
        const h = i === 0 ? 18 : 10
        const marks = [
          rect(plot.left, 0, x(o.ratio) - plot.left, h, i === 0 ? COLOR.ours : COLOR.variant),
          // parity runs behind the rows, under the labels that cross it, so over a bar it is drawn again
          line(x(1), 0, x(1), h, `stroke="${i === 0 ? "white" : "#222"}" stroke-dasharray="4 3" stroke-width="2"`),
          ...(i === 0 && g.design !== undefined ? [diamond(x(g.design.ratio), h / 2)] : []),
          ...o.targets.map((t) => line(x(t.at), -5, x(t.at), h + 5, TICK))
        ].join("")
        const last = Math.max(o.ratio, i === 0 ? (g.design?.ratio ?? 0) : 0, ...o.targets.map((t) => t.at))
        row(
          o.name,
          i === 0 ? 30 : 20,
          (c) => `<g transform="translate(0 ${c - h / 2})">${marks}</g>`,
          x(last) + 3,
          figures(o)
        )
      })
      for (const t of g.ours.flatMap((o) => o.targets)) {
        const verdict = t.met ? "met" : "missed"
        const tail = `<tspan fill="${VERDICT[verdict]}" font-weight="bold">${verdict}</tspan>`
        row("target", 20, (c) => line(x(t.at), c - 7, x(t.at), c + 7, TICK), x(t.at) + 2, `${t.text}: `, tail)
      }
      const design = g.design
      if (design !== undefined) {
        row(
          "the design's floor",
          20,
          (c) => diamond(x(design.ratio), c),
          x(design.ratio) + 6,
          figures(design)
        )
      }
      // the dashed parity line is this row's mark (a tick would read as a target)
      row("Node's floor", 20, () => "", x(1), `1x · ${fmt(g.floor)} ${unit}`)
      for (const p of g.peers) {
        row(
          p.name,
          20,
          (c) => rect(plot.left, c - 3, x(p.ratio) - plot.left, 6, COLOR.peer),
          x(p.ratio),
          figures(p)
        )
      }
      grid.push(line(x(1), groupTop, x(1), y + 4, PARITY))
    }
    const axis = y += 10
    const ticks = Array.from({ length: Math.round(max / step) + 1 }, (_, i) => i * step)
    grid.unshift(...ticks.map((t) => line(x(t), plotTop, x(t), axis, `stroke="#e3e3e3"`)))
    body.push(
      line(plot.left, axis, plot.left + plot.width, axis, `stroke="#333"`),
      ...ticks.flatMap((t) => [
        line(x(t), axis, x(t), axis + 5, `stroke="#333"`),
        text(x(t), axis + 18, `${t}x`, ` text-anchor="middle"${t === 1 ? ` font-weight="bold"` : ""}`)
      ]),
      text(
        plot.left,
        y += 36,
        "each server ÷ Node's floor (raw node:net); lower is better",
        ` fill="#555" font-size="12"`
      )
    )
    y += 12
    out.push(
      rect(12, panelTop, width - 24, y - panelTop, "white").replace("/>", ` stroke="#d0d7de"/>`),
      ...grid,
      ...body
    )
  }
  const height = y + 14
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"` +
    ` font-family="sans-serif" font-size="13">`,
    `<style>.halo{paint-order:stroke;stroke:white;stroke-width:4px;stroke-linejoin:round}</style>`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...out,
    `</svg>`
  ].join("\n") + "\n"
}

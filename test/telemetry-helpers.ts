/**
 * What the telemetry tests share: a strict parser of the Prometheus text format, and an OTLP/HTTP receiver
 * (`node:http` on 127.0.0.1, a free port) that records what it is sent.
 */
import { assert, expect } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import { Buffer } from "node:buffer"
import * as Http from "node:http"

/** One metric family of a Prometheus text page. */
export interface Family {
  readonly help: string | undefined
  readonly type: string
  readonly samples: Array<{ readonly labels: Record<string, string>; readonly value: number }>
}

/**
 * The Prometheus text format (0.0.4), strictly: `# HELP` and `# TYPE` before a family's samples, names and
 * labels as the format spells them; anything else throws, with the line.
 */
export const parsePrometheus = (text: string): Map<string, Family> => {
  const families = new Map<string, { help: string | undefined; type: string | undefined; samples: Family["samples"] }>()
  const family = (name: string) => {
    let found = families.get(name)
    if (found === undefined) families.set(name, found = { help: undefined, type: undefined, samples: [] })
    return found
  }
  expect(text.endsWith("\n"), "a page ends with a newline").toBe(true)
  for (const line of text.slice(0, -1).split("\n")) {
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line)
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (help !== null) family(help[1]).help = help[2]
    else if (type !== null) family(type[1]).type = type[2]
    else if (sample !== null) {
      const labels: Record<string, string> = {}
      const pairs = sample[2] ?? ""
      const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y
      for (let at = 0; at < pairs.length;) {
        label.lastIndex = at
        const match = label.exec(pairs)
        if (match === null) throw new Error(`bad labels in ${JSON.stringify(line)}`)
        labels[match[1]] = match[2]
        at = label.lastIndex
      }
      const value = Number(sample[3])
      if (Number.isNaN(value) && sample[3] !== "NaN") throw new Error(`bad value in ${JSON.stringify(line)}`)
      const of = family(sample[1])
      if (of.type === undefined) throw new Error(`a sample before its # TYPE: ${JSON.stringify(line)}`)
      of.samples.push({ labels, value })
    } else throw new Error(`not the Prometheus text format: ${JSON.stringify(line)}`)
  }
  const out = new Map<string, Family>()
  for (const [name, f] of families) {
    if (f.type === undefined) throw new Error(`${name} has no # TYPE`)
    out.set(name, { help: f.help, type: f.type, samples: f.samples })
  }
  return out
}

/** The value of `name`'s one sample with `labels`. */
export const valueOf = (page: Map<string, Family>, name: string, labels: Record<string, string> = {}) => {
  const family = page.get(name)
  assert(family !== undefined, `${name} is on the page`)
  const matching = family.samples.filter((s) => JSON.stringify(s.labels) === JSON.stringify(labels))
  expect(matching, `${name}${JSON.stringify(labels)}`).toHaveLength(1)
  return matching[0].value
}

/** What an OTLP/HTTP receiver was sent. */
export interface Post {
  readonly path: string
  readonly contentType: string | undefined
  readonly body: Buffer
}

/** An OTLP/HTTP receiver on 127.0.0.1 (a free port) that records every POST and answers 200 `{}`. */
export const receiver: Effect.Effect<{ readonly url: string; readonly posts: Array<Post> }, never, Scope.Scope> = Effect
  .acquireRelease(
    Effect.callback<{ readonly url: string; readonly posts: Array<Post>; readonly server: Http.Server }>((resume) => {
      const posts: Array<Post> = []
      const server = Http.createServer((request, response) => {
        const chunks: Array<Buffer> = []
        request.on("data", (chunk: Buffer) => chunks.push(chunk))
        request.on("end", () => {
          posts.push({
            path: request.url ?? "",
            contentType: request.headers["content-type"],
            body: Buffer.concat(chunks)
          })
          response.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        assert(address !== null && typeof address === "object")
        resume(Effect.succeed({ url: `http://127.0.0.1:${address.port}`, posts, server }))
      })
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

export interface KeyValue {
  readonly key: string
  readonly value: { readonly stringValue?: string; readonly intValue?: number | string }
}
export const attributes = (list: ReadonlyArray<KeyValue>) =>
  Object.fromEntries(list.map(({ key, value }) => [key, value.stringValue ?? Number(value.intValue)]))

export const json = (posts: ReadonlyArray<Post>, path: string) =>
  posts.filter((p) => p.path === path).map((p) => {
    expect(p.contentType).toBe("application/json")
    return JSON.parse(p.body.toString("utf8"))
  })

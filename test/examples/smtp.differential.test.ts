/**
 * The smtp example against CPython 3.11's smtpd, the oracle (`python3 -m smtpd -n -u -s 33554432 -c
 * DebuggingServer`):
 * seeded random SMTP sessions (HELO/EHLO, MAIL FROM and RCPT TO in many forms and with parameters, DATA with
 * dot-stuffed bodies, RSET, NOOP, VRFY, HELP, EXPN, unknown commands, empty and over-long lines, then QUIT) are
 * sent to both servers pipelined in one write, one command at a time, and cut in chunks of every size from 1 to
 * 12 and of random sizes; the reply transcripts must agree byte for byte, but for the greeting line and our
 * EHLO's `250-PIPELINING`.
 *
 * What the generator leaves out, since smtpd does worse there on purpose of ours (examples/smtp.ts's header): an
 * empty body (smtpd waits for a second CRLF.CRLF), a body over the size limit (smtpd stays in DATA after 552),
 * non-ASCII (smtpd closes), and addresses that make smtpd's email parser raise (`a@`, `@x`, `<<a@b>>`: smtpd
 * closes the connection).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Buffer } from "node:buffer"
import * as Net from "node:net"
import { DATA_SIZE_DEFAULT, serverOptions, Smtp } from "../../examples/smtp.ts"
import { python } from "../tools.ts"
import { serve as withServer, spawn } from "./peers.ts"

/** mulberry32: a small seeded PRNG, so a failing case is reproduced by its seed. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
type Random = ReturnType<typeof prng>
const pick = <A>(random: Random, items: ReadonlyArray<A>): A => items[Math.floor(random() * items.length)]
const int = (random: Random, below: number) => Math.floor(random() * below)

const ADDRESSES = ["<a@b.example>", "a@b.example", "<\"Fred Blogs\"@example.com>", "\"Fred Blogs\"@example.com"]
const MAIL_PARAMS = [
  "SIZE=10",
  "SIZE=33554432",
  "SIZE=33554433",
  "SIZE=99999999999",
  "SIZE=ten",
  "SIZE=",
  "SIZE",
  "BODY=7BIT",
  "BODY=8BITMIME",
  "BODY=BAD",
  "SMTPUTF8",
  "SMTPUTF8=yes",
  "ham=green",
  "size=20",
  "body=8bitmime",
  "=x",
  "a_b=c"
]
const GARBAGE = ["foo", "!!!", "\"x", ".x", "x..y", "<a@b", "~", "a b", "<foo>", "a@[1.2.3.4]", "<>"]
const HELP_ARGS = ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "STARTTLS", "mail", "X"]
const BODY_LINES = ["Subject: hi", "", "hello", ".", "..", ".dot", "..two", "x.y", "a line with spaces", "."]

/** A word in a random case. */
const cased = (random: Random, word: string) =>
  [...word].map((c) => (random() < 0.2 ? c.toLowerCase() : c.toUpperCase())).join("")

/** One line, or a DATA command and its body (DATA, lines, then the lone dot), as `Unit`s. */
type Unit = { readonly _tag: "Line"; readonly line: string } | {
  readonly _tag: "Data"
  readonly command: string
  readonly body: ReadonlyArray<string>
}

const mailLine = (random: Random, keyword: "MAIL FROM:" | "RCPT TO:") => {
  const verb = keyword.slice(0, 4)
  const r = random()
  if (r < 0.05) return cased(random, verb)
  if (r < 0.1) return `${cased(random, verb)} ${keyword.slice(5, -1)} <a@b.example>` // no colon
  if (r < 0.15) return `${cased(random, keyword)}` // no address
  const address = keyword === "MAIL FROM:" && random() < 0.15 ? "<>" : pick(random, ADDRESSES)
  const params = Array.from(
    { length: random() < 0.5 ? 0 : 1 + int(random, 3) },
    () => keyword === "MAIL FROM:" ? pick(random, MAIL_PARAMS) : pick(random, ["X=1", "NOTIFY=NEVER", "a"])
  )
  const space = pick(random, ["", "", " "])
  return [`${cased(random, keyword)}${space}${address}`, ...params].join(" ")
}

const body = (random: Random) => {
  // the first line is never empty, nor the lone dot: an empty body is one of our documented differences
  const lines = [pick(random, ["Subject: test", "From: x@y", "hello", ".hello", "..x"])]
  for (let n = int(random, 6); n > 0; n--) lines.push(pick(random, BODY_LINES.filter((l) => l !== ".")))
  return lines
}

const line = (l: string): Unit => ({ _tag: "Line", line: l })

const unit = (random: Random): Unit => {
  switch (int(random, 15)) {
    case 0:
    case 1: {
      const verb = pick(random, ["HELO", "EHLO"])
      return line(random() < 0.1 ? verb : `${cased(random, verb)}${random() < 0.1 ? "" : " client.example"}`)
    }
    case 2:
    case 3:
      return line(mailLine(random, "MAIL FROM:"))
    case 4:
    case 5:
      return line(mailLine(random, "RCPT TO:"))
    case 6:
    case 7:
      return {
        _tag: "Data",
        command: random() < 0.1 ? "DATA x" : cased(random, "DATA"),
        body: body(random)
      }
    case 8:
      return line(random() < 0.8 ? cased(random, "RSET") : "RSET now")
    case 9:
      return line(random() < 0.8 ? "NOOP" : "NOOP x")
    case 10:
      return line(pick(random, ["VRFY", "VRFY <a@b.example>", `VRFY ${pick(random, GARBAGE)}`]))
    case 11:
      return line(random() < 0.2 ? "HELP" : `HELP ${pick(random, HELP_ARGS)}`)
    case 12:
      return line(pick(random, ["EXPN", "EXPN list", "FOO", "XYZZY bar", "STARTTLS", "DATAX", "mail"]))
    case 13:
      return line(pick(random, ["", " ", "   x"]))
    default: {
      // over-long lines: smtpd's 512 bytes, and MAIL's 512 + 26 + 10 after EHLO
      const n = pick(random, [500, 511, 512, 513, 530, 547, 548, 549, 600])
      const kind = int(random, 3)
      if (kind === 0) return line(`NOOP ${"x".repeat(n - 5)}`.slice(0, n))
      if (kind === 1) return line(`HELP ${"y".repeat(n)}`.slice(0, n))
      const head = "MAIL FROM:<a@b.example> SIZE=10 "
      return line(`${head}${"X".repeat(Math.max(0, n - head.length - 2))}=1`.slice(0, n))
    }
  }
}

interface Case {
  readonly seed: number
  readonly units: ReadonlyArray<Unit>
}

const caseOf = (seed: number): Case => {
  const random = prng(seed)
  const units: Array<Unit> = []
  if (random() < 0.8) units.push({ _tag: "Line", line: pick(random, ["EHLO client.example", "HELO client.example"]) })
  for (let n = 3 + int(random, 14); n > 0; n--) units.push(unit(random))
  units.push({ _tag: "Line", line: "QUIT" })
  return { seed, units }
}

const wire = (lines: ReadonlyArray<string>) => Buffer.from(lines.map((l) => `${l}\r\n`).join(""), "latin1")
const bodyWire = (lines: ReadonlyArray<string>) => wire([...lines.map((l) => (l.startsWith(".") ? `.${l}` : l)), "."])

/** All of a case's bytes, as if every DATA were answered 354 (the way a pipelining client sends them). */
const allBytes = (c: Case) =>
  Buffer.concat(
    c.units.map((u) => u._tag === "Line" ? wire([u.line]) : Buffer.concat([wire([u.command]), bodyWire(u.body)]))
  )

/** Final reply lines (`ddd ` rather than `ddd-`) in `text`. */
const finals = (text: string) => text.split("\r\n").filter((l) => /^\d{3}(?: |$)/.test(l)).length

type Mode = { readonly _tag: "pipelined"; readonly chunk?: number | "random" } | { readonly _tag: "one by one" }

interface Answer {
  readonly received: string
  readonly closed: boolean
  readonly timedOut: boolean
}

/**
 * Runs `c` against 127.0.0.1:`port` in `mode`, resolving once the server closed (after QUIT's 221) or 3 seconds
 * passed. One by one, each line is sent once the previous one's final reply arrived; a DATA answered 354 is
 * followed by its body and dot in one write, and one answered otherwise by its body lines as commands.
 */
const converse = (port: number, c: Case, mode: Mode) =>
  new Promise<Answer>((resolve) => {
    const socket = Net.createConnection({ host: "127.0.0.1", port, noDelay: true })
    const chunks: Array<Buffer> = []
    const text = () => Buffer.concat(chunks).toString("latin1")
    let waiting: { count: number; onArrival: () => void } | undefined = undefined
    let done = false
    const finish = (closed: boolean, timedOut = false) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ received: text(), closed, timedOut })
    }
    const timer = setTimeout(() => finish(false, true), 3000)
    const check = () => {
      if (waiting !== undefined && finals(text()) >= waiting.count) {
        const onArrival = waiting.onArrival
        waiting = undefined
        onArrival()
      }
    }
    socket.on("data", (data) => {
      chunks.push(data)
      check()
    })
    socket.on("error", () => {})
    socket.on("close", () => finish(true))
    /** Sends `data`, then runs `then` once `more` further final replies arrived. */
    let expected = 1 // the greeting
    const send = (data: Buffer, more: number, then: () => void) => {
      expected += more
      socket.write(data)
      waiting = { count: expected, onArrival: then }
      check()
    }
    const oneByOne = (i: number) => {
      if (i === c.units.length) return
      const u = c.units[i]
      if (u._tag === "Line") return send(wire([u.line]), 1, () => oneByOne(i + 1))
      send(wire([u.command]), 1, () => {
        const last = text().split("\r\n").at(-2) ?? ""
        if (last.startsWith("354")) return send(bodyWire(u.body), 1, () => oneByOne(i + 1))
        const lines = [...u.body, "."]
        const each = (j: number): void =>
          j === lines.length ? oneByOne(i + 1) : send(wire([lines[j]]), 1, () => each(j + 1))
        each(0)
      })
    }
    socket.on("connect", () => {
      waiting = {
        count: 1,
        onArrival: () => {
          if (mode._tag === "one by one") return oneByOne(0)
          const all = allBytes(c)
          if (mode.chunk === undefined) return void socket.write(all)
          const random = prng(c.seed ^ 0x5eed)
          const write = (at: number): void => {
            if (at >= all.length) return
            const size = mode.chunk === "random" ? 1 + int(random, 64) : (mode.chunk as number)
            socket.write(all.subarray(at, at + size))
            setImmediate(() => write(at + size))
          }
          write(0)
        }
      }
      check()
    })
  })

/** The documented differences: the greeting's wording, and the PIPELINING we advertise. */
const normalise = (received: string) =>
  received.replace(/^220 [^\r]*\r\n/, "220 <greeting>\r\n").replaceAll("250-PIPELINING\r\n", "")

/** A free loopback port: bound, read, released. */
const freePort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const address = server.address() as Net.AddressInfo
      server.close(() => resolve(address.port))
    })
  })
)

/** Connects once to 127.0.0.1:`port` and resolves with the first line, or undefined when refused. */
const greetingOf = (port: number) =>
  new Promise<string | undefined>((resolve) => {
    const socket = Net.createConnection({ host: "127.0.0.1", port })
    let got = ""
    socket.on("data", (data) => {
      got += data.toString("latin1")
      if (got.includes("\r\n")) {
        socket.destroy()
        resolve(got.slice(0, got.indexOf("\r\n")))
      }
    })
    socket.on("error", () => resolve(undefined))
    socket.on("close", () => resolve(undefined))
  })

/** smtpd on a free port, killed with the scope; its port and the fqdn it greets with. */
const realSmtpd = Effect.gen(function*() {
  const port = yield* freePort
  // -s: smtpd's command line has no size limit (nor EHLO's SIZE) unless told one; ours has smtpd's 32 MiB default
  const args = ["-W", "ignore", "-m", "smtpd", "-n", "-u", "-s", String(DATA_SIZE_DEFAULT), "-c", "DebuggingServer"]
  yield* spawn("python3", [...args, `127.0.0.1:${port}`], { timeout: "60 seconds" })
  // poll until it accepts (bounded): smtpd says nothing when it is ready
  for (let i = 0; i < 200; i++) {
    const greeting = yield* Effect.promise(() => greetingOf(port))
    if (greeting !== undefined) {
      const fqdn = /^220 (\S+) Python SMTP proxy version 0\.3$/.exec(greeting)?.[1]
      if (fqdn === undefined) return yield* Effect.die(`unexpected smtpd greeting ${JSON.stringify(greeting)}`)
      return { port, fqdn }
    }
    yield* Effect.sleep("25 millis")
  }
  return yield* Effect.die("smtpd did not accept connections within 5 seconds")
})

const CASES = 60
const modes = (seed: number): ReadonlyArray<Mode> => [
  { _tag: "pipelined" },
  { _tag: "one by one" },
  // every chunk size from 1 to 12 over the cases, and random sizes
  { _tag: "pipelined", chunk: 1 + (seed % 12) },
  { _tag: "pipelined", chunk: "random" }
]
const show = (c: Case) => JSON.stringify(allBytes(c).toString("latin1"))
const modeName = (mode: Mode) =>
  mode._tag === "pipelined" && mode.chunk !== undefined ? `chunks of ${mode.chunk}` : mode._tag

describe("smtp example against CPython 3.11's smtpd", () => {
  ;(python.available ? it.live : it.live.skip)(
    `answers ${CASES} seeded sessions byte for byte as smtpd does, however they are written${python.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        python.require()
        const oracle = yield* realSmtpd
        const options = {
          hostname: oracle.fqdn,
          dataSizeLimit: 33554432,
          enableSMTPUTF8: true,
          starttls: false,
          implicitTls: false
        }
        yield* withServer(Smtp(options, () => Effect.void), serverOptions, (ours) =>
          Effect.gen(function*() {
            const differences: Array<string> = []
            for (let seed = 1; seed <= CASES; seed++) {
              const c = caseOf(seed)
              for (const mode of modes(seed)) {
                const expected = yield* Effect.promise(() => converse(oracle.port, c, mode))
                const actual = yield* Effect.promise(() => converse(ours, c, mode))
                const same = normalise(expected.received) === normalise(actual.received) &&
                  expected.closed === actual.closed
                // a conversation that timed out says the harness, not the servers, lost track
                if (!same || expected.timedOut || actual.timedOut) {
                  differences.push(
                    `seed ${seed} (${modeName(mode)}) sent ${show(c)}\n  smtpd: ${JSON.stringify(expected)}\n  ours:  ${
                      JSON.stringify(actual)
                    }`
                  )
                }
              }
            }
            expect(differences.slice(0, 5).join("\n")).toBe("")
          }))
      })),
    60_000
  )
})

/**
 * Framing against CPython's asynchat: the hard-coded cases of CPython's own `test_asynchat`, then thousands of
 * random cases run through both our `Framing.decode` and CPython 3.11's `asynchat.async_chat.handle_read`
 * (test/cpython/asynchat_frames.py), compared frame by frame.
 *
 * Reproduce a differential run with `FRAMING_CPYTHON_SEED=<seed>` (and optionally `FRAMING_CPYTHON_CASES=<n>`);
 * point `FRAMING_CPYTHON_PYTHON` at another interpreter if `python3` is 3.12+ (asynchat was removed there).
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Stream } from "effect"
import { Buffer } from "node:buffer"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Framing, Terminator } from "../src/index.ts"
import { chunkEvery } from "./helpers.ts"

const DRIVER = fileURLToPath(new URL("./cpython/asynchat_frames.py", import.meta.url))
const PYTHON = process.env.FRAMING_CPYTHON_PYTHON ?? "python3"
const SEED = Number(process.env.FRAMING_CPYTHON_SEED ?? 0x5eed_a5c7)
const CASES = Number(process.env.FRAMING_CPYTHON_CASES ?? 6000)

// ---------------------------------------------------------------------------------------------------------------
// Running a case through our implementation

interface Case {
  readonly chunks: ReadonlyArray<Uint8Array>
  /** Frame i is cut with `schedule[min(i, length - 1)]`, as the driver's `found_terminator` does. */
  readonly schedule: ReadonlyArray<Terminator.Terminator>
}

/** Both sides reduced to the same shape: terminated frames, and every byte never terminated, in order. */
interface Outcome {
  readonly frames: ReadonlyArray<string>
  readonly rest: string
}

// Latin-1 throughout: one char per byte, exact for any byte
const bytes = (s: string): Uint8Array => Buffer.from(s, "latin1")
const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64")
const unb64 = (base64: string): string => Buffer.from(base64, "base64").toString("latin1")

/** `data` in `size`-byte chunks: the echo server of `test_asynchat` sends `chunk_size` bytes at a time. */
const chunked = (data: string, size: number): Array<Uint8Array> => chunkEvery(bytes(data), size)

/** A machine whose state is the index of the next terminated frame; `none` frames do not advance it. */
const scheduled = (schedule: ReadonlyArray<Terminator.Terminator>) =>
  Framing.machine({
    initial: 0,
    terminator: (i: number) => schedule[Math.min(i, schedule.length - 1)],
    step: (i: number, frame: Framing.Frame) => Framing.next(frame.terminated ? i + 1 : i, frame)
  })

/** Frames as base64, so that both sides compare as plain strings. */
const ours = (c: Case): Effect.Effect<Outcome, Framing.FramingError> =>
  Stream.fromArray(c.chunks).pipe(
    Framing.decode(scheduled(c.schedule), { maxFrameLength: Number.POSITIVE_INFINITY }),
    Stream.runCollect,
    Effect.map((frames) => ({
      frames: frames.filter((f) => f.terminated).map((f) => b64(f.bytes)),
      rest: b64(Buffer.concat(frames.filter((f) => !f.terminated).map((f) => f.bytes)))
    }))
  )

/** Our outcome in latin1 text, for the hand-written expectations below. */
const oursText = (chunks: ReadonlyArray<Uint8Array>, ...schedule: Array<Terminator.Terminator>) =>
  ours({ chunks, schedule }).pipe(Effect.map((o) => ({ frames: o.frames.map(unb64), rest: unb64(o.rest) })))

// ---------------------------------------------------------------------------------------------------------------
// The CPython oracle

type PythonResult = Outcome | { readonly error: string }

const toPython = (t: Terminator.Terminator) =>
  t._tag === "Delimiter" ? { delimiter: b64(t.bytes) } : t._tag === "Length" ? { length: t.length } : { none: true }

/** Why the oracle cannot run, or undefined when `python3` has a working asynchat. */
const unavailable = ((): string | undefined => {
  const probe = spawnSync(PYTHON, [DRIVER, "--check"], { encoding: "utf8", timeout: 15_000 })
  if (probe.error !== undefined) return `cannot run ${PYTHON}: ${probe.error.message}`
  if (probe.status !== 0) {
    const why = probe.stderr.trim().split("\n").at(-1) ?? ""
    const hint = "asynchat was removed in Python 3.12: set FRAMING_CPYTHON_PYTHON to a Python <= 3.11"
    return `${PYTHON} has no usable asynchat (${hint}): ${why}`
  }
  return undefined
})()

/** One python3 process for all the cases given. */
const cpython = (cases: ReadonlyArray<Case>): Array<PythonResult> => {
  const input = JSON.stringify(cases.map((c) => ({ chunks: c.chunks.map(b64), schedule: c.schedule.map(toPython) })))
  const run = spawnSync(PYTHON, [DRIVER], { input, encoding: "utf8", maxBuffer: 1 << 28, timeout: 60_000 })
  if (run.error !== undefined) throw run.error
  if (run.status !== 0) throw new Error(`${PYTHON} ${DRIVER} exited with ${run.status}:\n${run.stderr}`)
  const results = JSON.parse(run.stdout) as Array<PythonResult>
  if (results.length !== cases.length) throw new Error(`expected ${cases.length} results, got ${results.length}`)
  return results
}

/**
 * A test that needs the oracle. Without it: a failure under CI (the comparison must not silently vanish), a
 * visible skip elsewhere.
 */
const withCPython = (name: string, test: () => Promise<void> | void) => {
  if (unavailable === undefined) return it(name, test)
  if (process.env.CI !== undefined) {
    return it(name, () => {
      throw new Error(`CPython's asynchat is required under CI but ${unavailable}`)
    })
  }
  console.warn(`Skipping "${name}": ${unavailable}`)
  return it.skip(`${name} (skipped: ${unavailable})`, test)
}

const quote = (s: string) => JSON.stringify(s)
const showOutcome = (o: Outcome) =>
  `frames [${o.frames.map((f) => quote(unb64(f))).join(", ")}] rest ${quote(unb64(o.rest))}`

/** A mismatch in full, readable: the input, then what each side made of it. */
const describeCase = (c: Case, python: PythonResult, mine: Outcome | string): string =>
  [
    `chunks:   [${c.chunks.map((b) => quote(Buffer.from(b).toString("latin1"))).join(", ")}]`,
    `schedule: [${c.schedule.map(Terminator.format).join(", ")}]`,
    "error" in python ? `cpython:  raised ${python.error}` : `cpython:  ${showOutcome(python)}`,
    typeof mine === "string" ? `ours:     failed ${mine}` : `ours:     ${showOutcome(mine)}`
  ].join("\n")

const same = (python: PythonResult, mine: Outcome | string): boolean =>
  typeof mine !== "string" && !("error" in python) && python.rest === mine.rest &&
  python.frames.length === mine.frames.length && python.frames.every((f, i) => f === mine.frames[i])

// ---------------------------------------------------------------------------------------------------------------
// CPython's Lib/test/test_asynchat.py, ported

const line = (term: string) => `hello world${term}I'm not dead yet!${term}`
const numericData = "hello world, I'm not dead yet!\n"
// `echo_client` never re-sets the terminator: after a count, asynchat's terminator is 0, "collect forever",
// which is our `none` (our length(0) would be an empty frame)
const afterCount = Terminator.none

interface Ported {
  readonly label: string
  readonly chunks: ReadonlyArray<Uint8Array>
  readonly schedule: ReadonlyArray<Terminator.Terminator>
  readonly expected: { readonly frames: ReadonlyArray<string>; readonly rest: string }
}

/** CPython's framing tests, one entry per test (or family), each with the chunkings its echo server produces. */
const ported: ReadonlyArray<{ readonly name: string; readonly cases: ReadonlyArray<Ported> }> = [
  {
    name: "line terminators \\n, \\r\\n and qqq cut the echo at 1, 2 and 3 bytes per chunk (test_line_terminator1-3)",
    cases: ["\n", "\r\n", "qqq"].flatMap((term) =>
      [1, 2, 3].map((size) => ({
        label: `${quote(term)}, ${size} bytes per chunk`,
        chunks: chunked(line(term), size),
        schedule: [Terminator.delimiter(term)],
        expected: { frames: ["hello world", "I'm not dead yet!"], rest: "" }
      }))
    )
  },
  {
    name: "a numeric terminator of 1 or 6 takes exactly data[:n] as the first frame (test_numeric_terminator1-2)",
    cases: [1, 6].flatMap((n) =>
      [1, 2, 3].map((size) => ({
        label: `length ${n}, ${size} bytes per chunk`,
        chunks: chunked(numericData, size),
        schedule: [Terminator.length(n), afterCount],
        expected: { frames: [numericData.slice(0, n)], rest: numericData.slice(n) }
      }))
    )
  },
  {
    name: "a None terminator terminates nothing: every byte is rest (test_none_terminator)",
    cases: [{
      label: "none",
      chunks: chunked(numericData, 1),
      schedule: [Terminator.none],
      expected: { frames: [], rest: numericData }
    }]
  },
  {
    name: "an empty line is an empty frame (test_empty_line)",
    cases: [{
      label: "empty line",
      chunks: chunked("hello world\n\nI'm not dead yet!\n", 1),
      schedule: [Terminator.lf],
      expected: { frames: ["hello world", "", "I'm not dead yet!"], rest: "" }
    }]
  },
  {
    // find_prefix_at_end("qwerty\r", "\r\n") == 1 and find_prefix_at_end("qwertydkjf", "\r\n") == 0, seen from outside
    name: "a \\r ending one chunk and the \\n starting the next are found as \\r\\n (test_find_prefix_at_end)",
    cases: [
      {
        label: "prefix completed by the next chunk",
        chunks: [bytes("qwerty\r"), bytes("\n")],
        schedule: [Terminator.crlf],
        expected: { frames: ["qwerty"], rest: "" }
      },
      {
        // a held-back prefix that is never completed still belongs to the unterminated rest
        label: "prefix never completed",
        chunks: [bytes("qwerty\r")],
        schedule: [Terminator.crlf],
        expected: { frames: [], rest: "qwerty\r" }
      },
      {
        label: "no prefix",
        chunks: [bytes("qwertydkjf")],
        schedule: [Terminator.crlf],
        expected: { frames: [], rest: "qwertydkjf" }
      }
    ]
  }
]

describe("Framing conforms to CPython's test_asynchat", () => {
  for (const test of ported) {
    it.effect(test.name, () =>
      Effect.gen(function*() {
        for (const c of test.cases) {
          expect(yield* oursText(c.chunks, ...c.schedule), c.label).toEqual(c.expected)
        }
      }))
  }

  it("a negative numeric terminator is refused (test_disallow_negative_terminator)", () => {
    expect(() => Terminator.length(-1)).toThrow(Terminator.InvalidTerminator)
  })

  // the same expectations through asynchat itself: the driver models test_asynchat's socket client faithfully
  withCPython("the CPython driver meets the same expectations", () => {
    const cases = ported.flatMap((test) => test.cases)
    const results = cpython(cases)
    cases.forEach((c, i) => {
      const result = results[i]
      if ("error" in result) throw new Error(`${c.label}: the driver raised\n${result.error}`)
      expect({ frames: result.frames.map(unb64), rest: unb64(result.rest) }, c.label).toEqual(c.expected)
    })
  })
})

// ---------------------------------------------------------------------------------------------------------------
// Random cases

/** mulberry32: tiny, seedable, good enough to spread cases; reproducible from the printed seed. */
const prng = (seed: number) => {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1))
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[int(0, xs.length - 1)]
  return { next, int, pick, chance: (p: number): boolean => next() < p }
}

type Rng = ReturnType<typeof prng>

// Small alphabets so that delimiters occur by chance too, not only where they are planted
const ALPHABETS = ["a", "ab", "abq", "a\r\n", "ab\r\nq", "aq\n\r"]
// Self-overlapping delimiters (a partial match restarts inside itself) and multi-byte line delimiters
const OVERLAPPING = ["aab", "aaa", "abab", "abaab", "aba", "aa", "a", "ba"]
const DELIMITERS = [...OVERLAPPING, "\n", "\r", "\r\n", "\r\n\r\n", "\n\r", "qqq"]

const randomTerminator = (rng: Rng, alphabet: string): Terminator.Terminator => {
  const roll = rng.next()
  if (roll < 0.55) {
    if (rng.chance(0.5)) return Terminator.delimiter(rng.pick(DELIMITERS))
    let d = ""
    for (let n = rng.int(1, 5); d.length < n;) d += rng.pick([...alphabet])
    return Terminator.delimiter(d)
  }
  // never 0: asynchat reads a 0 count as "collect forever", we as an empty frame
  if (roll < 0.9) return Terminator.length(rng.chance(0.5) ? rng.int(1, 5) : rng.int(1, 40))
  return Terminator.none
}

const randomCase = (rng: Rng): Case => {
  const alphabet = rng.pick(ALPHABETS)
  const schedule: Array<Terminator.Terminator> = []
  for (let n = rng.int(1, 6); schedule.length < n;) {
    const t = randomTerminator(rng, alphabet)
    schedule.push(t)
    // nothing fires after none, so nothing after it would ever be used
    if (t._tag === "None") break
  }
  const delimiters = schedule.flatMap((t) => t._tag === "Delimiter" ? [t.bytes.toString("latin1")] : [])
  let payload = ""
  const target = rng.chance(0.2) ? rng.int(80, 300) : rng.int(0, 80)
  while (payload.length < target) {
    const roll = rng.next()
    if (delimiters.length > 0 && roll < 0.25) payload += rng.pick(delimiters)
    // a proper prefix: the held-back tail that must not be mistaken for a delimiter
    else if (delimiters.length > 0 && roll < 0.35) payload += rng.pick(delimiters).slice(0, -1)
    else payload += rng.pick([...alphabet])
  }
  const data = bytes(payload)
  const chunks: Array<Uint8Array> = []
  const mode = rng.next()
  if (mode < 0.15) {
    chunks.push(data)
  } else if (mode < 0.3) {
    for (let i = 0; i < data.length; i++) chunks.push(data.subarray(i, i + 1))
  } else {
    // sizes from 0: empty reads in the middle of a frame or of a held-back prefix
    const max = mode < 0.8 ? 7 : 40
    for (let i = 0; i < data.length;) {
      const size = rng.int(0, max)
      chunks.push(data.subarray(i, i + size))
      i += size
    }
  }
  if (rng.chance(0.05)) chunks.unshift(new Uint8Array(0))
  if (rng.chance(0.05)) chunks.push(new Uint8Array(0))
  return { chunks, schedule }
}

describe("Framing agrees with CPython 3.11's asynchat (differential)", () => {
  withCPython(`${CASES} random chunkings and terminator schedules frame identically (seed ${SEED})`, async () => {
    const rng = prng(SEED)
    const cases = Array.from({ length: CASES }, () => randomCase(rng))
    const python = cpython(cases)
    const mine = await Effect.runPromise(
      Effect.forEach(cases, (c) =>
        ours(c).pipe(
          Effect.exit,
          Effect.map((exit) => Exit.isSuccess(exit) ? exit.value : Cause.pretty(exit.cause))
        ))
    )
    const mismatches = cases.flatMap((_, i) => same(python[i], mine[i]) ? [] : [i])
    if (mismatches.length > 0) {
      const shown = mismatches.slice(0, 5).map((i) => `case ${i}:\n${describeCase(cases[i], python[i], mine[i])}`)
      throw new Error(
        `${mismatches.length} of ${CASES} cases differ from CPython (reproduce with FRAMING_CPYTHON_SEED=${SEED}):\n\n`
          + shown.join("\n\n")
      )
    }
    // guard against a generator that stopped exercising anything
    const terminated = python.reduce((n, r) => n + ("frames" in r ? r.frames.length : 0), 0)
    expect(terminated).toBeGreaterThan(CASES)
  })
})

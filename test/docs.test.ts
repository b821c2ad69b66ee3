/**
 * The documentation's examples compile: every ```ts block in the JSDoc of src/ and in the README is written out
 * as a module of its own and type-checked in one `tsc --noEmit` run, with `effect-asynchat` and
 * `effect-asynchat/testing` resolving to the sources, as they do for the examples. And every export of a public
 * module has a JSDoc with an example, and none is `@internal`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")

/** A fenced ```ts block: where it is, and its code. */
interface Block {
  /** Relative to the repository, with `/`. */
  readonly file: string
  /** Its n-th ts block, from 1. */
  readonly index: number
  /** The line of its opening fence, from 1. */
  readonly line: number
  readonly code: string
}

const OPEN = /^```ts\b/
const CLOSE = /^```\s*$/

/** The ts blocks of `text`, whose lines are first cut by `unwrap` (undefined: outside any block's comment). */
const blocksOf = (file: string, text: string, unwrap: (line: string) => string | undefined): Array<Block> => {
  const blocks: Array<Block> = []
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    if (!OPEN.test(unwrap(lines[i]) ?? "")) continue
    const start = i
    const code: Array<string> = []
    for (i++; i < lines.length; i++) {
      const line = unwrap(lines[i])
      if (line === undefined || CLOSE.test(line)) break
      code.push(line)
    }
    blocks.push({ file, index: blocks.length + 1, line: start + 1, code: code.join("\n") })
  }
  return blocks
}

/** A JSDoc line without its ` * ` margin; undefined for a line that is not one. */
const jsdocLine = (line: string): string | undefined => /^\s*\*(?: |$)(.*)$/.exec(line)?.[1]

const sourceFiles = (dir: string): Array<string> =>
  Fs.readdirSync(Path.join(root, dir), { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(".ts"))
    .map((name) => `${dir}/${name.split(Path.sep).join("/")}`)
    .toSorted()

const allBlocks = (): Array<Block> => [
  ...sourceFiles("src").flatMap((file) => blocksOf(file, Fs.readFileSync(Path.join(root, file), "utf8"), jsdocLine)),
  ...blocksOf("README.md", Fs.readFileSync(Path.join(root, "README.md"), "utf8"), (line) => line)
]

/** A compiler diagnostic: the file it names (relative to `dir`, or as given) and its text. */
const diagnosticsOf = (
  output: string
): Array<{ readonly file: string; readonly line: number; readonly text: string }> => {
  const diagnostics: Array<{ file: string; line: number; text: string }> = []
  for (const line of output.split("\n")) {
    const found = /^(.+?)\((\d+),(\d+)\): (error TS\d+: .*)$/.exec(line)
    if (found !== null) diagnostics.push({ file: found[1], line: Number(found[2]), text: found[4] })
    else if (line.trim() !== "" && diagnostics.length > 0) {
      diagnostics[diagnostics.length - 1].text += `\n  ${line.trim()}`
    }
  }
  return diagnostics
}

/** Type-checks `blocks` in one run; a line per failure, naming the block's file, fence line and index. */
const typeCheck = (blocks: ReadonlyArray<Block>): Array<string> => {
  // Inside the repository, so that the package resolves to itself (its `exports` under the source condition)
  // and its dependencies from its node_modules, as for the examples. `scratch/` is ignored by git and the linters.
  const scratch = Path.join(root, "scratch")
  const madeScratch = !Fs.existsSync(scratch)
  if (madeScratch) Fs.mkdirSync(scratch)
  const dir = Fs.mkdtempSync(Path.join(scratch, "docs-"))
  try {
    const names = new Map<string, Block>()
    blocks.forEach((block, i) => {
      const name = `block${i + 1}.ts`
      names.set(name, block)
      // `export {}`: a block without imports is a module too, so blocks never share a scope
      Fs.writeFileSync(Path.join(dir, name), `${block.code}\nexport {}\n`)
    })
    Fs.writeFileSync(
      Path.join(dir, "tsconfig.json"),
      JSON.stringify({
        extends: "../../tsconfig.json",
        // examples declare what they show without using it
        compilerOptions: { noUnusedLocals: false, noUnusedParameters: false, plugins: [] },
        include: ["*.ts"]
      })
    )
    const run = ChildProcess.spawnSync(
      Path.join(root, "node_modules", ".bin", "tsc"),
      ["-p", Path.join(dir, "tsconfig.json"), "--noEmit", "--pretty", "false"],
      { cwd: dir, encoding: "utf8" }
    )
    if (run.error !== undefined) throw run.error
    const output = `${run.stdout}${run.stderr}`
    const failures = diagnosticsOf(output).map(({ file, line, text }) => {
      const block = names.get(Path.basename(file))
      return block === undefined || Path.resolve(dir, file) !== Path.join(dir, Path.basename(file))
        ? `${Path.relative(root, Path.resolve(dir, file))}:${line}: ${text}`
        : `${block.file}:${block.line + line} (ts block ${block.index} of ${block.file}): ${text}`
    })
    if (run.status !== 0 && failures.length === 0) failures.push(`tsc exited with ${run.status}: ${output}`)
    return failures
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
    if (madeScratch) Fs.rmSync(scratch, { recursive: true, force: true })
  }
}

/** The modules of src/ a user can import: all but src/internal/. */
const publicModules = (): Array<string> => sourceFiles("src").filter((file) => !file.startsWith("src/internal/"))

/** The exports of a public module that have no JSDoc, or one without an example. */
const exportsWithoutExample = (file: string): Array<string> => {
  const lines = Fs.readFileSync(Path.join(root, file), "utf8").split("\n")
  const missing: Array<string> = []
  lines.forEach((line, i) => {
    const name = /^export (?:declare )?(?:const|let|function|class|interface|type) (\w+)/.exec(line)?.[1]
    if (name === undefined) return
    let j = i - 1
    if (!lines[j]?.trimEnd().endsWith("*/")) return void missing.push(`${file}:${i + 1} ${name}: no JSDoc`)
    while (j > 0 && !lines[j].trimStart().startsWith("/**")) j--
    if (!lines.slice(j, i).some((l) => l.includes("@example"))) missing.push(`${file}:${i + 1} ${name}: no @example`)
  })
  return missing
}

describe("documentation", () => {
  it("every ts block of the JSDoc in src/ and of the README type-checks", { timeout: 120_000 }, () => {
    const blocks = allBlocks()
    // every public module documents its exports with examples, and the README shows a few programs
    expect(blocks.length).toBeGreaterThan(80)
    expect(blocks.filter((block) => block.file === "README.md").length).toBeGreaterThanOrEqual(4)
    const failures = typeCheck(blocks)
    expect(failures, `examples that do not type-check:\n${failures.join("\n")}`).toEqual([])
  })

  it("a block that does not type-check is reported with its file, line and the compiler's message", {
    timeout: 120_000
  }, () => {
    const broken: Block = { file: "src/Example.ts", index: 2, line: 10, code: "const n: number = \"one\"" }
    const [failure, ...rest] = typeCheck([broken])
    expect(rest).toEqual([])
    expect(failure).toMatch(/^src\/Example\.ts:11 \(ts block 2 of src\/Example\.ts\): error TS2322: .*string.*number/)
  })

  it("every export of a public module has a JSDoc with an example", () => {
    expect(publicModules().flatMap(exportsWithoutExample)).toEqual([])
  })

  // `@internal` strips a declaration from the built types (`stripInternal`), so a published type that names one
  // breaks in users' hands; what the runtime shares lives in src/internal/, which the exports map hides.
  it("no public module has an @internal declaration, and the exports map hides src/internal/", () => {
    const tagged = publicModules().filter((file) =>
      Fs.readFileSync(Path.join(root, file), "utf8").includes("@internal")
    )
    expect(tagged).toEqual([])
    const { exports } = JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8"))
    expect(exports["./internal/*"]).toBeNull()
    expect(exports["./testing"]["@effect-asynchat/source"]).toBe("./src/testing.ts")
  })
})

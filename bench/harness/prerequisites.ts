/**
 * What a section of `bench/servers.ts` needs before it runs: tools on PATH and examples that exist. A section
 * without them says so and is skipped, rather than failing the run.
 */
import { accessSync, constants, readFileSync } from "node:fs"
import { delimiter, join } from "node:path"
import { ROOT } from "./processes.ts"
import { skipped } from "./results.ts"

/** Where the sections' tools come from on Debian and Ubuntu. */
const INSTALL = "apt-get install redis-server redis-tools wrk openssl"

export const onPath = (tool: string): boolean =>
  (process.env.PATH ?? "").split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, tool), constants.X_OK)
      return true
    } catch {
      return false
    }
  })

/** Whether all of `tools` are on PATH; says which are not. */
export const need = (section: string, tools: ReadonlyArray<string>): boolean => {
  const missing = tools.filter((t) => !onPath(t))
  if (missing.length === 0) return true
  skipped(`${section}: skipped, ${missing.join(", ")} not found (install: ${INSTALL})`)
  return false
}

/** Whether examples/cli.ts lists the example `name` (its module, e.g. `Redis`); says so when it does not. */
export const needExample = (section: string, name: string): boolean => {
  let listed = false
  try {
    listed = readFileSync(join(ROOT, "examples", "cli.ts"), "utf8").includes(`${name}.command`)
  } catch {
    listed = false
  }
  if (!listed) skipped(`${section}: skipped, examples/cli.ts does not list the ${section} example`)
  return listed
}

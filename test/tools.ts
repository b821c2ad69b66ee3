/**
 * External tools the end-to-end tests drive (curl, nc, python3). A missing tool skips its tests on a
 * developer's machine, with the reason in the test name; under CI it fails them, never skipping.
 */
import { spawnSync } from "node:child_process"

/** Whether `command` runs: `probe` are arguments that make it exit 0 quickly. */
const runs = (command: string, probe: ReadonlyArray<string>): boolean =>
  spawnSync(command, probe, { stdio: "ignore", timeout: 10_000 }).status === 0

/**
 * What a suite needs to know about a tool: `available` to choose `it` or `it.skip`, and `skipReason` to append to
 * the test names. Under CI a missing tool is never skipped: `available` is true so the tests run and fail loudly.
 */
export const tool = (command: string, probe: ReadonlyArray<string> = ["--version"]) => {
  const present = runs(command, probe)
  const ci = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false"
  return {
    present,
    available: present || ci,
    skipReason: present ? "" : ` (skipped: ${command} is not installed)`,
    /** Throws with an install hint when the tool is missing: call it first in a test that ran under CI. */
    require: () => {
      if (!present) throw new Error(`${command} is required for this test (apt-get install it; CI installs it)`)
    }
  }
}

/** curl, for the HTTP examples. */
export const curl = tool("curl")
/** nc from netcat-openbsd (`-q` waits after EOF on stdin). */
export const nc = tool("nc", ["-h"])
/** CPython with asynchat (3.11 ships it; 3.12 removed it). */
export const python = tool("python3", ["-W", "ignore", "-c", "import asynchat"])

/** HAProxy, to put in front of a listener with `proxyProtocol` (`-v` prints its version). */
export const haproxy = tool("haproxy", ["-v"])

/** redis-benchmark, from Debian's redis-tools: load for the redis example. */
export const redisBenchmark = tool("redis-benchmark")

/**
 * wrk, for load on the HTTP examples: its own probe, because `wrk -v` and `wrk --version` print the version
 * but exit 1 (Debian's wrk 4.1.0): present when it runs at all.
 */
export const wrk = (() => {
  const probe = spawnSync("wrk", ["-v"], { encoding: "utf8", timeout: 10_000 })
  const present = probe.error === undefined && `${probe.stdout}${probe.stderr}`.includes("wrk")
  const ci = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false"
  return {
    present,
    available: present || ci,
    skipReason: present ? "" : " (skipped: wrk is not installed)",
    require: () => {
      if (!present) throw new Error("wrk is required for this test (apt-get install it; CI installs it)")
    }
  }
})()

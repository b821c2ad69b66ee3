/**
 * The tls section of `bench/servers.ts`: examples/http11.ts started with `--tls-key`/`--tls-cert` against a
 * node:https hello world (bench/peers/node-https.ts) under wrk over https, keep-alive, as the http11 section
 * runs it over TCP, with Node's floor beside them (bench/peers/raw-https.ts: the raw answers over node:tls). The key and certificate (EC prime256v1, self-signed for localhost; wrk checks neither) are
 * made with openssl into a temporary directory, removed at the end.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { addRow, alternate } from "../harness/measure.ts"
import { need, needExample } from "../harness/prerequisites.ts"
import { NODE, ours, withServers } from "../harness/processes.ts"
import { listCommands, NODE_FLOOR } from "../harness/results.ts"
import { wrk, WRK_SECONDS, wrkRequests } from "./http11.ts"

/** A key and a self-signed certificate for localhost and 127.0.0.1, in a new temporary directory. */
const certificate = () => {
  const dir = mkdtempSync(join(tmpdir(), "asynchat-bench-tls-"))
  const key = join(dir, "key.pem")
  const cert = join(dir, "cert.pem")
  const args = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost"
  execFileSync("openssl", [
    ...args.split(" "),
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-keyout",
    key,
    "-out",
    cert
  ], { stdio: "ignore" })
  return { dir, key, cert }
}

export const measure = async () => {
  console.log(`\ntls: examples/http11.ts over TLS vs node:https, wrk -t1 -c50 -d${WRK_SECONDS}s over https`)
  if (!need("tls", ["wrk", "openssl"])) return
  if (!needExample("tls", "Http11")) return
  const { dir, key, cert } = certificate()
  try {
    const subjects = [
      {
        name: "ours (http11 over TLS)",
        role: "ours",
        argv: ours("examples/cli.ts", "http11", "--port", "PORT", "--tls-key", key, "--tls-cert", cert)
      },
      { name: "node:https", role: "peer", argv: [NODE, "bench/peers/node-https.ts", "PORT", key, cert] },
      {
        name: "raw node:tls (https)",
        role: "Node's floor",
        argv: [NODE, "bench/peers/raw-https.ts", "PORT", key, cert]
      }
    ]
    // the report names the files, not where this run kept them
    const named = (argv: ReadonlyArray<string>) => argv.map((arg) => arg === key ? "KEY" : arg === cert ? "CERT" : arg)
    listCommands("tls", subjects.map((subject) => ({ ...subject, argv: named(subject.argv) })), [{
      argv: wrk(WRK_SECONDS, "https"),
      note: "key and certificate: EC prime256v1, self-signed for localhost, made by openssl at bench time"
    }])
    await withServers(subjects, async (servers) => {
      const [o, n, r] = await alternate(
        servers,
        (server) => wrkRequests(server, WRK_SECONDS, "https"),
        (server) => wrkRequests(server, 2, "https")
      )
      const fields = { section: "tls", workload: `wrk -t1 -c50 -d${WRK_SECONDS}s, https`, unit: "µs/req" }
      addRow({ ...fields, ours: "ours", peer: "node:https", target: 0.9 }, o, n, 1e6)
      // Node's floor over TLS: raw-http.ts's answers on a node:tls socket
      addRow({ ...fields, ours: NODE_FLOOR, peer: "node:https", target: undefined }, r, n, 1e6)
      addRow({ ...fields, ours: "ours", peer: NODE_FLOOR, target: undefined }, o, r, 1e6)
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

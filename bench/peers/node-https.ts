/**
 * The peer for the tls section of `bench/servers.ts`: bench/peers/node-http.ts's hello world over `node:https`,
 * on the same Node, with the key and certificate the section makes. Keep-alive is node:https's default.
 *
 * Run: node bench/peers/node-https.ts PORT KEY CERT
 */
import { readFileSync } from "node:fs"
import { createServer } from "node:https"

const [port, key, cert] = [Number(process.argv[2] ?? 8443), process.argv[3], process.argv[4]]
if (!(port > 0) || key === undefined || cert === undefined) {
  console.error("usage: node bench/peers/node-https.ts PORT KEY CERT")
  process.exit(2)
}
createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": 11 })
  res.end("hello world")
}).listen(port, "127.0.0.1", () => console.log(`node-https listening on 127.0.0.1:${port}`))

// Client of the selector tests, run by node inside a network namespace.
// Unlike the lab probe, it can connect from a fixed source port, and it can
// move itself into a cgroup first, because the kernel attaches a socket to
// the cgroup of the process that creates it.
//   node connect.mjs HOST PORT TIMEOUT_MS [--local-address ADDRESS] [--local-port PORT] [--cgroup DIR]
// Prints the first line the server sends, or exits 1 with the reason on an
// error or after TIMEOUT_MS.
import { writeFileSync } from "node:fs";
import net from "node:net";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "local-address": { type: "string" },
    "local-port": { type: "string" },
    cgroup: { type: "string" },
  },
});
const [host, port, timeoutMs] = positionals;

function fail(reason) {
  process.stderr.write(`${reason}\n`);
  process.exit(1);
}

if (values.cgroup !== undefined) {
  // A pid written to cgroup.procs moves the whole process, with all its threads.
  writeFileSync(`${values.cgroup}/cgroup.procs`, String(process.pid));
}

let done = false;
let received = "";
const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), Number(timeoutMs));
const socket = net.connect({
  host,
  port: Number(port),
  localAddress: values["local-address"],
  localPort: values["local-port"] === undefined ? undefined : Number(values["local-port"]),
});
socket.setEncoding("utf8");
socket.on("data", (chunk) => {
  received += chunk;
  const end = received.indexOf("\n");
  if (done || end === -1) return;
  done = true;
  clearTimeout(timer);
  process.stdout.write(`${received.slice(0, end).replace(/\r$/, "")}\n`);
  socket.destroy();
});
socket.on("end", () => {
  if (!done) fail("connection closed before a full line arrived");
});
socket.on("error", (error) => {
  if (!done) fail(error.message);
});

// The client half of `npm run bench:gateway`'s floors, in a process of its own (run with --trace-gc-nvp, so that
// what it allocates is counted as the server's is): `calls` round trips, one at a time, to bench/floorEcho.ts,
// over HTTP/2 (a gRPC-shaped call) or TCP (the first argument), after 500 to warm up. Prints one JSON line:
// the round trips' p50 and p99 in ms.
import http2 from "node:http2";
import net from "node:net";

const [mode, port, callsText] = process.argv.slice(2);
const calls = Number(callsText);
const message = Buffer.alloc(30);
const times: number[] = [];

if (mode === "h2") {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  for (let i = 0; i < calls + 500; i++) {
    const t = performance.now();
    await new Promise<void>((done, fail) => {
      const stream = session.request({ ":method": "POST", ":path": "/smmf.v1.InferenceService/Generate", "content-type": "application/grpc", te: "trailers" });
      stream.on("data", () => {});
      stream.once("end", done);
      stream.once("error", fail);
      stream.end(message);
    });
    if (i >= 500) times.push(performance.now() - t);
  }
  session.close();
} else {
  const socket = net.connect(Number(port), "127.0.0.1");
  socket.setNoDelay(true);
  await new Promise((ok) => socket.once("connect", ok));
  for (let i = 0; i < calls + 500; i++) {
    const t = performance.now();
    await new Promise<void>((done) => {
      socket.once("data", () => done());
      socket.write(message);
    });
    if (i >= 500) times.push(performance.now() - t);
  }
  socket.destroy();
}
times.sort((a, b) => a - b);
console.log(`RESULT ${JSON.stringify({ p50: times[Math.floor(calls * 0.5)], p99: times[Math.floor(calls * 0.99)] })}`);

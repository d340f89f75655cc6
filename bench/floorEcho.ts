// A floor for `npm run bench:gateway`'s gRPC hop: a bare Node HTTP/2 server that answers every stream the way a
// gRPC server answers a short call (headers, one 20-byte message, `grpc-status: 0` trailers) without any gRPC
// library, and a bare TCP echo server. Round trips to them, one at a time, measure what the machine and Node's
// sockets and HTTP/2 cost before SMMF adds anything. Prints `PORTS <h2> <tcp>`.
import http2 from "node:http2";
import net from "node:net";
import type { AddressInfo } from "node:net";

const MESSAGE = Buffer.alloc(20);
const h2 = http2.createServer();
h2.on("stream", (stream) => {
  stream.on("data", () => {});
  stream.on("end", () => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(MESSAGE);
  });
});
const tcp = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on("data", (d) => socket.write(d));
});
await new Promise<void>((ok) => h2.listen(0, "127.0.0.1", ok));
await new Promise<void>((ok) => tcp.listen(0, "127.0.0.1", ok));
console.log(`PORTS ${(h2.address() as AddressInfo).port} ${(tcp.address() as AddressInfo).port}`);

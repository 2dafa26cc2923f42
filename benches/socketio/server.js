// The socket.io 4.8 side of the avgate bench: what avgate does, done the usual socket.io way.
//
// Like avgate it connects to the load generator (a line protocol on TCP, see
// drivers/src/load/frame.rs), broadcasts every `EV <point> <value>` line to every client
// as an `event`, sends a new client a `snapshot` of the current values, and turns a
// client's `command` into a `SET` on the device, acknowledged once the device answered
// (after its read-back event went out). Connection state recovery is on, so a client that
// drops and comes back within the window gets the events it missed.
//
//   node server.js --load 127.0.0.1:7010 [--port 0]
//
// Prints `listening <port>` once the device is connected and clients may come.

"use strict";

const http = require("node:http");
const net = require("node:net");
const { Server } = require("socket.io");

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const [loadHost, loadPort] = option("load", "127.0.0.1:7010").split(":");
const port = Number(option("port", "0"));

const values = {};
// Acks of commands sent to the device, oldest first: the device answers in order.
const waiting = [];

const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  // The same keepalive as avgate's default (15 s, dropped after two intervals).
  pingInterval: 15000,
  pingTimeout: 30000,
  connectionStateRecovery: {
    maxDisconnectionDuration: 10 * 60 * 1000,
    skipMiddlewares: true,
  },
});

io.on("connection", (socket) => {
  if (!socket.recovered) {
    socket.emit("snapshot", { device: "load", online: true, points: values });
  }
  socket.on("command", (command, ack) => {
    if (typeof ack !== "function") return;
    const point = Number(command && command.point);
    const value = Number(command && command.value);
    if (!Number.isInteger(point) || !Number.isInteger(value)) {
      ack({ ok: false, error: "point and value must be integers" });
      return;
    }
    waiting.push(ack);
    device.write(`SET ${point} ${value}\n`);
  });
});

const device = net.connect({ host: loadHost, port: Number(loadPort), noDelay: true });
let pending = "";
device.setEncoding("utf8");
device.on("data", (chunk) => {
  pending += chunk;
  let end;
  while ((end = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, end);
    pending = pending.slice(end + 1);
    if (line.startsWith("EV ")) {
      const [, point, value] = line.split(" ");
      const name = `value.${point}`;
      values[name] = Number(value);
      io.emit("event", { device: "load", point: name, value: Number(value) });
    } else if (line === "OK") {
      const ack = waiting.shift();
      if (ack) ack({ ok: true });
    } else if (line.startsWith("ERR")) {
      const ack = waiting.shift();
      if (ack) ack({ ok: false, error: line.slice(4) });
    }
  }
});
device.on("error", (error) => {
  console.error(`load generator at ${loadHost}:${loadPort}: ${error.message}`);
  process.exit(1);
});
device.on("close", () => {
  console.error("the load generator closed the connection");
  process.exit(1);
});
device.on("connect", () => {
  httpServer.listen(port, "127.0.0.1", () => {
    console.log(`listening ${httpServer.address().port}`);
  });
});

process.on("SIGTERM", () => process.exit(0));

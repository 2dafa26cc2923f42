// avgate.js: the panel client library for avgate's WebSocket protocol (docs/PROTOCOL.md).
// One ES module, no dependencies. Served by the gateway at /avgate.js; docs/PANELS.md
// describes the API and the data-av-* attributes.
//
//   import { connect } from "/avgate.js";
//   const gw = connect({ client: "lobby-panel", subscribe: ["proj-*"] });
//   gw.watch("proj-left/power", p => console.log(p.value, p.stale, p.online));
//   const c = gw.command("proj-left", "power", { on: true });
//   await c.accepted; const r = await c.result;   // { ok, error? }

/** The protocol version this library speaks; it is served by the gateway that speaks it. */
export const PROTOCOL_VERSION = 1;

// The gateway's ping interval, written here by the gateway when it serves this file, so
// a silent link is noticed within two of its intervals whatever the site sets.
const GATEWAY_PING_MS = 15000;

const MAX_BACKOFF_MS = 10000;

/**
 * @typedef {Object} ConnectOptions
 * @property {string} [url] WebSocket URL; default ws(s)://this-host/ws.
 * @property {string} [client] Stable panel name; commands are deduplicated per client. Default: one generated and kept in localStorage.
 * @property {string} [token] The panel's token when the site has [auth] tokens.
 * @property {string[]} [subscribe] Device/point patterns (docs/PROTOCOL.md, Subscriptions). Default: everything.
 * @property {number} [commandMaxAgeMs] A command not sent within this long (offline) fails locally with `expired` instead of running late. Default 60000.
 * @property {number} [pingIntervalMs] Link check interval; a link silent for about two of them is declared lost. Default: the gateway's.
 * @property {boolean|Element} [bind] Bind data-av-* attributes in this element (true: the document). Default true.
 * @property {Storage} [storage] Where resume point, state and outbox persist. Default localStorage.
 */

/**
 * @typedef {Object} Status
 * @property {"connecting"|"live"|"offline"|"unauthorized"} state
 * @property {string} [reason] Why, in words to show.
 * @property {number} [retryInMs] When offline: the next attempt is in this many ms.
 * @property {number} attempt Connection attempts since the link was last live.
 * @property {boolean} [resumed] When live: whether the gateway resumed (true) or sent a snapshot.
 */

/**
 * @typedef {Object} Point
 * @property {*} value The last value (undefined when never read).
 * @property {boolean} stale The value is the last known, not a current reading.
 * @property {boolean} online The device is connected and answering.
 * @property {string} [ts] When the gateway recorded it (events only).
 */

/**
 * @typedef {Object} CommandResult
 * @property {boolean} ok
 * @property {{code: string, message: string}} [error]
 */

/**
 * @typedef {Object} CommandHandle
 * @property {string} id The command's id (kept across reconnects and reloads).
 * @property {Promise<{duplicate: boolean}>} accepted Resolves when the gateway queued it (or knew it already); resolves at result time for commands refused before queueing.
 * @property {Promise<CommandResult>} result Never rejects: device errors, refusals and local expiry are `{ok: false, error}`.
 */

/**
 * @typedef {Object} CommandUpdate
 * @property {string} id
 * @property {string} [device]
 * @property {string} [command]
 * @property {Object} [args]
 * @property {string} [macro] for a macro run (runMacro): its name, and no device
 * @property {"pending"|"accepted"|"result"} phase
 * @property {CommandResult} [result]
 */

/** Opens a connection to the gateway. @param {ConnectOptions} [options] @returns {Gateway} */
export function connect(options = {}) {
  return new Gateway(options);
}

/** Turns a `device/point` pattern with `*` wildcards into a RegExp. */
function patternRegExp(pattern) {
  const escaped = pattern.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp("^" + escaped.join(".*") + "$");
}

function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
  };
}

export class Gateway {
  /** @param {ConnectOptions} options */
  constructor(options) {
    this.options = options;
    this.storage = options.storage || (typeof localStorage !== "undefined" ? localStorage : memoryStorage());
    this.url = options.url || (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    this.client = options.client || this._generatedClient();
    this.token = options.token;
    this.subscribe = options.subscribe || null;
    this.commandMaxAgeMs = options.commandMaxAgeMs ?? 60000;
    this.pingMs = options.pingIntervalMs || GATEWAY_PING_MS;
    this.keys = {
      place: "avgate:" + this.client + ":place",
      outbox: "avgate:" + this.client + ":outbox",
      counter: "avgate:" + this.client + ":counter",
    };
    /** device id -> {online, error, points: Map<string, {value, ts}>, stale: Set<string>} */
    this.devices = new Map();
    /** @type {{epoch: number, seq: number} | null} */
    this.place = null;
    this.watchers = new Set();
    this.statusListeners = new Set();
    this.commandListeners = new Set();
    this.errorListeners = new Set();
    /** id -> {entry, resolveAccepted, resolveResult} for commands issued by this page. */
    this.waiting = new Map();
    this.outbox = this._loadOutbox();
    /** @type {Status} */
    this.status = { state: "connecting", attempt: 0 };
    this.socket = null;
    this.closed = false;
    this.snapshotParts = null;
    this._restore();
    this._onWake = () => {
      if (document.visibilityState !== "hidden") this._wake();
    };
    this._onOnline = () => this._wake();
    if (typeof window !== "undefined") {
      window.addEventListener("online", this._onOnline);
      document.addEventListener("visibilitychange", this._onWake);
      window.addEventListener("pagehide", () => this._persistPlace());
    }
    if (options.bind !== false && typeof document !== "undefined") {
      const root = options.bind && options.bind !== true ? options.bind : document;
      const go = () => this.bind(root === document ? document.body : root);
      if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", go, { once: true });
      else go();
    }
    this._open();
  }

  // ---- public API -------------------------------------------------------------------

  /** Calls `fn` with the connection status now and on every change. @param {(s: Status) => void} fn @returns {() => void} stop */
  onStatus(fn) {
    this.statusListeners.add(fn);
    fn(this.status);
    return () => this.statusListeners.delete(fn);
  }

  /**
   * Calls `fn(point, key)` for every matching point now and on every change (value,
   * staleness or the device going on- or offline). Patterns: `proj-*`/`power`, `switcher/route.*`.
   * @param {string} pattern @param {(p: Point, key: string) => void} fn @returns {() => void} stop
   */
  watch(pattern, fn) {
    const [devicePart, pointPart = "*"] = pattern.split("/");
    const watcher = { device: patternRegExp(devicePart), point: patternRegExp(pointPart), fn };
    this.watchers.add(watcher);
    for (const [id, d] of this.devices) {
      if (!watcher.device.test(id)) continue;
      for (const point of this._pointNames(d)) {
        if (watcher.point.test(point)) fn(this._point(id, point), id + "/" + point);
      }
    }
    return () => this.watchers.delete(watcher);
  }

  /** The point now, or undefined if the gateway has not told us of it. @param {string} key `device/point` @returns {Point|undefined} */
  get(key) {
    const [id, point] = key.split("/");
    const d = this.devices.get(id);
    if (!d) return undefined;
    if (point !== "online" && point !== "error" && !d.points.has(point)) return undefined;
    return this._point(id, point);
  }

  /** Device ids known now. @returns {string[]} */
  deviceIds() {
    return [...this.devices.keys()];
  }

  /**
   * Sends a command. Kept in a persisted outbox until its result arrives: re-sent with the
   * same id after a reconnect or a page reload, so it runs exactly once.
   * @param {string} device @param {string} command @param {Object} [args] @returns {CommandHandle}
   */
  command(device, command, args = {}) {
    const id = this._nextId();
    const entry = { id, device, command, args, created: Date.now(), accepted: false };
    this.outbox.push(entry);
    this._saveOutbox();
    const handle = this._track(entry);
    this._emitCommand(entry, "pending");
    if (this.status.state === "live") this._sendCommand(entry);
    return handle;
  }

  /**
   * Runs one of the site's macros (`[macros.NAME]`): a command that names only the macro,
   * kept in the outbox like any command so it runs once across reconnects. Its progress
   * is the point `@macros/NAME`.
   * @param {string} name @returns {CommandHandle}
   */
  runMacro(name) {
    const id = this._nextId();
    const entry = { id, macro: name, created: Date.now(), accepted: false };
    this.outbox.push(entry);
    this._saveOutbox();
    const handle = this._track(entry);
    this._emitCommand(entry, "pending");
    if (this.status.state === "live") this._sendCommand(entry);
    return handle;
  }

  /** Commands sent but not yet answered (from this page or one before a reload). @returns {CommandUpdate[]} */
  pending() {
    return this.outbox.map((e) => ({ ...e, phase: e.accepted ? "accepted" : "pending" }));
  }

  /** Calls `fn` on every command's progress, including commands restored after a reload. @param {(u: CommandUpdate) => void} fn @returns {() => void} */
  onCommand(fn) {
    this.commandListeners.add(fn);
    return () => this.commandListeners.delete(fn);
  }

  /** Calls `fn({code, message})` for protocol `error` messages (any code, known or not). */
  onError(fn) {
    this.errorListeners.add(fn);
    return () => this.errorListeners.delete(fn);
  }

  /** Uses another token (after the sign-in screen) and connects again. @param {string} token */
  setToken(token) {
    this.token = token;
    this.closed = false;
    this._reconnectNow();
  }

  /** Closes the connection for good; pending commands stay in the outbox for the next page. */
  close() {
    this.closed = true;
    this._persistPlace();
    clearTimeout(this.retryTimer);
    clearInterval(this.checkTimer);
    if (typeof window !== "undefined") {
      window.removeEventListener("online", this._onOnline);
      document.removeEventListener("visibilitychange", this._onWake);
    }
    if (this.observer) this.observer.disconnect();
    if (this.socket) this.socket.close();
    this._setStatus({ state: "offline", reason: "closed", attempt: 0 });
  }

  // ---- connection ---------------------------------------------------------------------

  _open() {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this.helloDone = false;
    this.lastHeard = Date.now();
    this._setStatus({ state: "connecting", attempt: this.status.attempt + 1 });
    socket.onopen = () => {
      if (socket !== this.socket) return;
      /** @type {any} */
      const hello = { type: "hello", client: this.client };
      if (this.token) hello.token = this.token;
      if (this.subscribe) hello.subscribe = this.subscribe;
      if (this.place) hello.resume = this.place;
      socket.send(JSON.stringify(hello));
    };
    socket.onmessage = (m) => {
      if (socket !== this.socket) return;
      this.lastHeard = Date.now();
      this.pinged = false;
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      this._handle(msg);
    };
    socket.onclose = (e) => {
      if (socket !== this.socket) return;
      this._lost(e.reason || "the connection closed (code " + e.code + ")");
    };
    clearInterval(this.checkTimer);
    // Browsers hide WebSocket pings, so the link is checked with the protocol's own ping:
    // quiet for a quarter interval → ping; nothing heard for 1.25 intervals → lost (a
    // connect that hangs counts too). Checked every eighth of an interval, a dead link is
    // noticed within 1.4 of the gateway's intervals, inside the two the panel promises.
    this.checkTimer = setInterval(() => this._check(socket), this.pingMs / 8);
  }

  _check(socket) {
    if (socket !== this.socket) return;
    const quiet = Date.now() - this.lastHeard;
    if (quiet > this.pingMs * 1.25) {
      this._lost("no answer from the gateway for " + Math.round(quiet / 1000) + " s");
    } else if (quiet > this.pingMs / 4 && !this.pinged && socket.readyState === WebSocket.OPEN) {
      this.pinged = true;
      socket.send('{"type":"ping"}');
    }
  }

  _lost(reason) {
    const socket = this.socket;
    this.socket = null;
    clearInterval(this.checkTimer);
    if (socket) {
      socket.onclose = socket.onmessage = socket.onopen = null;
      try {
        socket.close();
      } catch {}
    }
    this.snapshotParts = null;
    if (this.closed || this.status.state === "unauthorized") return;
    const attempt = this.status.attempt;
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(attempt, 5));
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    this._setStatus({ state: "offline", reason, retryInMs: delay, attempt });
    this.retryTimer = setTimeout(() => this._open(), delay);
  }

  /** The network came back or the tablet woke: try now instead of waiting out the backoff. */
  _wake() {
    if (this.closed || this.status.state === "unauthorized") return;
    if (this.status.state === "offline") this._reconnectNow();
    else if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send('{"type":"ping"}');
  }

  _reconnectNow() {
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onclose = socket.onmessage = socket.onopen = null;
      try {
        socket.close();
      } catch {}
    }
    this._setStatus({ ...this.status, state: "connecting", attempt: 0 });
    this._open();
  }

  _setStatus(status) {
    const wasLive = this.status.state === "live";
    this.status = status;
    if (wasLive !== (status.state === "live")) this._notifyAll();
    for (const fn of this.statusListeners) fn(status);
  }

  // ---- messages -----------------------------------------------------------------------

  _handle(msg) {
    switch (msg.type) {
      case "welcome":
        this.place = { epoch: msg.epoch, seq: this.place && msg.resumed ? this.place.seq : msg.seq };
        this.resumed = !!msg.resumed;
        if (msg.resumed) this._goLive();
        break;
      case "snapshot":
        this._receiveSnapshot(msg);
        break;
      case "event":
        this._event(msg);
        break;
      case "position":
        if (this.place && msg.seq > this.place.seq) {
          this.place.seq = msg.seq;
          this._persistSoon();
        }
        break;
      case "accepted":
        this._accepted(msg);
        break;
      case "result":
        this._result(msg);
        break;
      case "error":
        this._error(msg);
        break;
      default:
        // pong, subscribed, and anything newer than this library: nothing to do.
        break;
    }
  }

  _goLive() {
    this._setStatus({ state: "live", attempt: 0, resumed: this.resumed });
    this._persistSoon();
    this._flushOutbox();
  }

  /**
   * The one place snapshots arrive. A snapshot split into parts (`part` of `parts`) is
   * gathered first and replaces the state only when
   * complete, so a panel never shows half a site.
   */
  _receiveSnapshot(msg) {
    const partial = msg.parts > 1 && msg.part < msg.parts;
    if (partial || this.snapshotParts) {
      if (!this.snapshotParts) this.snapshotParts = { devices: {} };
      // A device with very many points may be spread over consecutive parts: merge them.
      for (const [id, d] of Object.entries(msg.devices || {})) {
        const seen = this.snapshotParts.devices[id];
        this.snapshotParts.devices[id] = seen
          ? {
              ...d,
              points: { ...(seen.points || {}), ...(d.points || {}) },
              stale: [...(seen.stale || []), ...(d.stale || [])],
            }
          : d;
      }
      if (partial) return;
      msg = { ...msg, devices: this.snapshotParts.devices };
      this.snapshotParts = null;
    }
    this._applySnapshot(msg);
  }

  /** Replaces local state: a device or point absent from the snapshot is gone. */
  _applySnapshot(msg) {
    const before = this.devices;
    this.devices = new Map();
    for (const [id, d] of Object.entries(msg.devices || {})) {
      const points = new Map();
      for (const [name, value] of Object.entries(d.points || {})) points.set(name, { value });
      this.devices.set(id, { online: !!d.online, error: d.error ?? null, points, stale: new Set(d.stale || []) });
    }
    this.place = { epoch: msg.epoch, seq: msg.seq };
    // Everyone hears about every point that exists now and every one that vanished.
    for (const [id, d] of before) {
      for (const point of this._pointNames(d)) {
        const now = this.devices.get(id);
        if (!now || (!now.points.has(point) && point !== "online" && point !== "error")) this._notify(id, point, true);
      }
    }
    for (const [id, d] of this.devices) for (const point of this._pointNames(d)) this._notify(id, point);
    if (this.status.state !== "live") this._goLive();
    else this._persistSoon();
  }

  _event(msg) {
    if (this.place && msg.seq <= this.place.seq) return; // already have it
    let d = this.devices.get(msg.device);
    if (!d) {
      d = { online: false, error: null, points: new Map(), stale: new Set() };
      this.devices.set(msg.device, d);
    }
    if (this.place) this.place.seq = msg.seq;
    if (msg.point === "online") {
      d.online = !!msg.value;
      if (!d.online) for (const p of d.points.keys()) d.stale.add(p);
      for (const p of this._pointNames(d)) this._notify(msg.device, p);
    } else if (msg.point === "error") {
      d.error = msg.value;
      this._notify(msg.device, "error");
    } else {
      d.points.set(msg.point, { value: msg.value, ts: msg.ts });
      d.stale.delete(msg.point);
      this._notify(msg.device, msg.point);
    }
    this._persistSoon();
  }

  _error(msg) {
    const error = { code: msg.code, message: msg.message || msg.code };
    if (msg.code === "unauthorized") {
      this._setStatus({ state: "unauthorized", reason: error.message, attempt: 0 });
      const socket = this.socket;
      this.socket = null;
      clearInterval(this.checkTimer);
      if (socket) {
        socket.onclose = null;
        socket.close();
      }
    }
    // A command too broken for a result names its id: answer its waiter.
    if (msg.id !== undefined && this.outbox.some((e) => e.id === msg.id)) {
      this._result({ id: msg.id, ok: false, error });
    }
    for (const fn of this.errorListeners) fn(error);
  }

  // ---- commands -----------------------------------------------------------------------

  _generatedClient() {
    const key = "avgate:client";
    let name = this.storage.getItem(key);
    if (!name) {
      name = "panel-" + Math.random().toString(36).slice(2, 10);
      this.storage.setItem(key, name);
    }
    return name;
  }

  _nextId() {
    const n = Number(this.storage.getItem(this.keys.counter) || 0) + 1;
    this.storage.setItem(this.keys.counter, String(n));
    // The time part keeps ids unique even if storage was cleared within the dedupe window.
    return this.client + "-" + Date.now().toString(36) + "-" + n;
  }

  _track(entry) {
    let resolveAccepted, resolveResult;
    const accepted = new Promise((r) => (resolveAccepted = r));
    const result = new Promise((r) => (resolveResult = r));
    this.waiting.set(entry.id, { resolveAccepted, resolveResult });
    return { id: entry.id, accepted, result };
  }

  _sendCommand(entry) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    const message = entry.macro !== undefined ? { type: "command", id: entry.id, macro: entry.macro } : { type: "command", id: entry.id, device: entry.device, command: entry.command, args: entry.args };
    this.socket.send(JSON.stringify(message));
  }

  /** After every (re)connect: re-send what has no result yet, with its own id; fail what is too old. */
  _flushOutbox() {
    const now = Date.now();
    for (const entry of [...this.outbox]) {
      if (!entry.accepted && now - entry.created > this.commandMaxAgeMs) {
        const seconds = Math.round((now - entry.created) / 1000);
        this._result({
          id: entry.id,
          ok: false,
          error: { code: "expired", message: "not sent: the gateway was unreachable for " + seconds + " s; press again if still wanted" },
        });
      } else {
        this._sendCommand(entry);
      }
    }
  }

  _accepted(msg) {
    const entry = this.outbox.find((e) => e.id === msg.id);
    if (!entry) return;
    entry.accepted = true;
    this._saveOutbox();
    const w = this.waiting.get(msg.id);
    if (w) w.resolveAccepted({ duplicate: !!msg.duplicate });
    this._emitCommand(entry, "accepted");
  }

  _result(msg) {
    const index = this.outbox.findIndex((e) => e.id === msg.id);
    if (index < 0) return;
    const [entry] = this.outbox.splice(index, 1);
    this._saveOutbox();
    /** @type {CommandResult} */
    const result = msg.ok ? { ok: true } : { ok: false, error: msg.error || { code: "unknown", message: "failed" } };
    const w = this.waiting.get(msg.id);
    if (w) {
      w.resolveAccepted({ duplicate: false });
      w.resolveResult(result);
      this.waiting.delete(msg.id);
    }
    this._emitCommand(entry, "result", result);
  }

  _emitCommand(entry, phase, result) {
    const update = { id: entry.id, device: entry.device, command: entry.command, args: entry.args, macro: entry.macro, phase, result };
    for (const fn of this.commandListeners) fn(update);
  }

  _loadOutbox() {
    try {
      const saved = JSON.parse(this.storage.getItem(this.keys.outbox) || "[]");
      return Array.isArray(saved) ? saved : [];
    } catch {
      return [];
    }
  }

  _saveOutbox() {
    try {
      this.storage.setItem(this.keys.outbox, JSON.stringify(this.outbox));
    } catch {
      // Storage full or refused: the outbox still works for this page's life.
    }
  }

  // ---- state ----------------------------------------------------------------------------

  _pointNames(d) {
    return ["online", "error", ...d.points.keys()];
  }

  /** @returns {Point} */
  _point(id, point) {
    const d = this.devices.get(id);
    const live = this.status.state === "live";
    if (!d) return { value: undefined, stale: true, online: false };
    if (point === "online") return { value: d.online, stale: !live, online: d.online && live };
    if (point === "error") return { value: d.error, stale: !live, online: d.online && live };
    const p = d.points.get(point);
    if (!p) return { value: undefined, stale: true, online: d.online && live };
    // Nothing is current while the link to the gateway is down.
    return { value: p.value, stale: d.stale.has(point) || !live, online: d.online && live, ts: p.ts };
  }

  _notify(id, point, removed = false) {
    const key = id + "/" + point;
    const p = removed ? { value: undefined, stale: true, online: false } : this._point(id, point);
    for (const w of this.watchers) {
      if (w.device.test(id) && w.point.test(point)) w.fn(p, key);
    }
  }

  _notifyAll() {
    for (const [id, d] of this.devices) for (const point of this._pointNames(d)) this._notify(id, point);
  }

  /**
   * The resume point and the state it belongs to are saved together, so a reloaded page
   * resumes from exactly the state it shows.
   */
  _restore() {
    try {
      const saved = JSON.parse(this.storage.getItem(this.keys.place) || "null");
      if (!saved || JSON.stringify(saved.subscribe || null) !== JSON.stringify(this.subscribe)) return;
      this.place = saved.place;
      for (const [id, d] of Object.entries(saved.devices)) {
        this.devices.set(id, { online: d.online, error: d.error, points: new Map(d.points), stale: new Set(d.stale) });
      }
    } catch {
      this.place = null;
      this.devices = new Map();
    }
  }

  _persistSoon() {
    if (this.persistTimer) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = null;
      this._persistPlace();
    }, 200);
  }

  _persistPlace() {
    if (!this.place) return;
    const devices = {};
    for (const [id, d] of this.devices) {
      devices[id] = { online: d.online, error: d.error, points: [...d.points], stale: [...d.stale] };
    }
    try {
      this.storage.setItem(this.keys.place, JSON.stringify({ place: this.place, subscribe: this.subscribe, devices }));
    } catch {
      // Too big for storage: forget the place, so a reload asks for a snapshot.
      try {
        this.storage.removeItem(this.keys.place);
      } catch {}
    }
  }

  // ---- declarative attributes -------------------------------------------------------------

  /**
   * Wires data-av-* attributes under `root` (and elements added later):
   * data-av-text="dev/point", data-av-press='dev command {"arg":1}',
   * data-av-hold='dev command {start}' + data-av-release='{stop}',
   * data-av-active="dev/point == value", data-av-show="dev/point" (or a comparison).
   * Classes: av-pending, av-stale, av-offline, av-error, av-active.
   * @param {Element} root
   */
  bind(root) {
    const scan = (el) => {
      if (!(el instanceof Element)) return;
      const all = el.matches("[data-av-text],[data-av-press],[data-av-hold],[data-av-active],[data-av-show]") ? [el] : [];
      all.push(...el.querySelectorAll("[data-av-text],[data-av-press],[data-av-hold],[data-av-active],[data-av-show]"));
      for (const e of all) this._bindElement(e);
    };
    scan(root);
    if (typeof MutationObserver !== "undefined" && !this.observer) {
      this.observer = new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) scan(n);
      });
      this.observer.observe(root, { childList: true, subtree: true });
    }
  }

  _bindElement(el) {
    if (el.__avBound) return;
    el.__avBound = true;
    const mark = (p) => {
      el.classList.toggle("av-stale", p.stale);
      el.classList.toggle("av-offline", !p.online);
    };
    const text = el.getAttribute("data-av-text");
    if (text) {
      this.watch(text, (p) => {
        el.textContent = p.value === undefined || p.value === null ? "—" : formatValue(p.value);
        mark(p);
      });
    }
    for (const attr of ["data-av-active", "data-av-show"]) {
      const expr = el.getAttribute(attr);
      if (!expr) continue;
      const test = parseCondition(expr);
      this.watch(test.key, (p) => {
        const on = test.holds(p.value) && !p.stale;
        if (attr === "data-av-active") {
          el.classList.toggle("av-active", on);
          if (el.matches("button,[role=button],[role=switch]")) el.setAttribute("aria-pressed", String(on));
        } else {
          el.hidden = !test.holds(p.value);
        }
      });
    }
    const press = el.getAttribute("data-av-press");
    const hold = el.getAttribute("data-av-hold");
    const action = parseAction(press || hold);
    if (!action) return;
    const ready = () => {
      const live = this.status.state === "live";
      const online = this.get(action.device + "/online");
      const usable = live && !!online && online.value === true;
      el.classList.toggle("av-offline", !usable);
      if ("disabled" in el) el.disabled = !usable;
      else el.setAttribute("aria-disabled", String(!usable));
    };
    this.watch(action.device + "/online", ready);
    this.onStatus(ready);
    const show = (phase, result) => {
      el.classList.toggle("av-pending", phase !== "result");
      el.setAttribute("aria-busy", String(phase !== "result"));
      if (phase === "result") {
        el.classList.toggle("av-error", !result.ok);
        if (result.ok) el.removeAttribute("data-av-error");
        else el.setAttribute("data-av-error", result.error.message);
        el.dispatchEvent(new CustomEvent("av-result", { detail: result, bubbles: true }));
      }
    };
    const same = (u) => u.device === action.device && u.command === action.command && JSON.stringify(u.args) === JSON.stringify(action.args);
    this.onCommand((u) => same(u) && show(u.phase, u.result));
    for (const u of this.pending()) if (same(u)) show(u.phase);
    if (press) {
      el.addEventListener("click", () => {
        if (el.classList.contains("av-pending")) return; // the same target is on its way
        this.command(action.device, action.command, action.args);
      });
    } else {
      const release = parseJSON(el.getAttribute("data-av-release"), {});
      let holding = false;
      const stop = () => {
        if (!holding) return;
        holding = false;
        this.command(action.device, action.command, release);
      };
      el.addEventListener("pointerdown", (e) => {
        if (el.disabled) return;
        holding = true;
        try {
          el.setPointerCapture(e.pointerId);
        } catch {}
        this.command(action.device, action.command, action.args);
      });
      for (const type of ["pointerup", "pointercancel", "lostpointercapture", "pointerleave"]) el.addEventListener(type, stop);
      window.addEventListener("blur", stop);
      document.addEventListener("visibilitychange", stop);
      this.onStatus((s) => s.state !== "live" && stop());
    }
  }
}

function parseJSON(text, fallback) {
  if (!text) return fallback;
  try {
    return JSON.parse(text);
  } catch {
    return fallback;
  }
}

/** `dev command {"json":"args"}` → {device, command, args}. */
function parseAction(text) {
  if (!text) return null;
  const m = /^\s*(\S+)\s+(\S+)\s*(.*)$/.exec(text);
  if (!m) return null;
  return { device: m[1], command: m[2], args: parseJSON(m[3].trim(), {}) };
}

/** `dev/point`, `dev/point == value` or `dev/point != value` (value: JSON or a bare word). */
function parseCondition(text) {
  const m = /^\s*(\S+)\s*(==|!=)\s*(.+?)\s*$/.exec(text);
  if (!m) return { key: text.trim(), holds: (v) => !!v };
  const want = parseJSON(m[3], m[3]);
  const equal = (v) => v === want || String(v) === String(want);
  return { key: m[1], holds: m[2] === "==" ? equal : (v) => !equal(v) };
}

/** A value as a person reads it. @param {*} value @returns {string} */
export function formatValue(value) {
  if (typeof value === "boolean") return value ? "On" : "Off";
  if (typeof value === "number") return value.toLocaleString(undefined, { maximumFractionDigits: 2 });
  if (Array.isArray(value)) return value.map(formatValue).join(", ");
  if (value && typeof value === "object") return Object.entries(value).map(([k, v]) => k + ": " + formatValue(v)).join(", ");
  return String(value);
}

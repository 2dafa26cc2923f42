// The widgets every built-in panel is made of (display_power, source_select, volume,
// route, camera, button, toggle, status, page_link; macro and lease for the room as a
// whole, and the scheduled-run countdown banner), each bound to one device through
// avgate.js: pending until the result, selected only from the device's state, disabled
// while the device or the link is down, errors shown beside the control.

import { formatValue } from "/avgate.js";
import { $, humanize, range } from "/panel-dom.js";

const POWER_BUSY = { warming: "Warming up", cooling: "Cooling down" };
const ERROR_WORDS = {
  device_busy: "The device is busy (warming up or cooling down) — try again in a moment",
  device_offline: "The device isn't responding",
  timeout: "The device didn't answer in time",
  expired: "Not sent: the room controller was unreachable",
};

/** Everything a widget needs: whether its device is usable now, and its controls' commands. */
class Binding {
  constructor(gw, device, root) {
    this.gw = gw;
    this.device = device;
    this.root = root;
    this.error = $("div", { class: "error-text", role: "alert" });
    this.controls = [];
    this.usable = false;
    const update = () => {
      const online = gw.get(device + "/online");
      this.usable = gw.status.state === "live" && !!online && online.value === true;
      root.classList.toggle("is-offline", !this.usable);
      for (const c of this.controls) c.refresh();
    };
    gw.watch(device + "/online", update);
    gw.onStatus(update);
    // Commands from before a reload (still in the outbox) show as pending, then their result.
    gw.onCommand((u) => {
      if (u.device !== device) return;
      for (const c of this.controls) if (c.matches(u)) c.progress(u.phase, u.result);
    });
    queueMicrotask(() => {
      for (const u of gw.pending()) if (u.device === device) for (const c of this.controls) if (c.matches(u)) c.progress(u.phase);
    });
  }

  /**
   * A button that sends `command args` on click. `blocked()` adds a reason to disable it
   * (warming up), `selected()` says whether the device's state matches its target.
   */
  button(label, command, args, { blocked = () => false, selected = () => false, action, cls } = {}) {
    const el = $("button", { type: "button", class: cls, "data-action": action, "data-command": command, "data-args": JSON.stringify(args) }, label);
    const control = this.control(el, command, args, blocked, selected);
    el.addEventListener("click", () => {
      if (!control.enabled() || control.pending) return; // the same target is already on its way
      this.send(command, args);
    });
    return el;
  }

  control(el, command, args, blocked = () => false, selected = () => false) {
    const key = JSON.stringify(args);
    const control = {
      el,
      pending: false,
      matches: (u) => u.command === command && JSON.stringify(u.args) === key,
      enabled: () => this.usable && !blocked(),
      refresh: () => {
        const disabled = !control.enabled();
        el.disabled = disabled;
        el.setAttribute("aria-disabled", String(disabled));
        const on = !!selected() && this.usable;
        el.classList.toggle("is-selected", on);
        // Switches say aria-checked themselves; a slider is neither pressed nor not.
        if (el.tagName === "BUTTON" && el.getAttribute("role") === null) el.setAttribute("aria-pressed", String(on));
      },
      progress: (phase, result) => {
        control.pending = phase !== "result";
        el.classList.toggle("is-pending", control.pending);
        el.setAttribute("aria-busy", String(control.pending));
        if (phase === "result") this.showResult(el, result);
      },
    };
    this.controls.push(control);
    control.refresh();
    return control;
  }

  send(command, args) {
    return this.gw.command(this.device, command, args);
  }

  showResult(el, result) {
    el.dataset.result = result.ok ? "ok" : result.error.code;
    if (result.ok) {
      el.classList.remove("is-error");
      if (this.error.dataset.for === el.dataset.action) this.error.textContent = "";
      return;
    }
    el.classList.add("is-error");
    const words = ERROR_WORDS[result.error.code];
    this.error.textContent = (words ? words + ": " : "") + result.error.message;
    this.error.dataset.for = el.dataset.action || "";
    clearTimeout(this.errorTimer);
    this.errorTimer = setTimeout(() => {
      el.classList.remove("is-error");
      this.error.textContent = "";
    }, 8000);
  }

  refresh() {
    for (const c of this.controls) c.refresh();
  }

  /** Calls `fn(point)` on changes of `point` and refreshes the controls. */
  watch(point, fn) {
    this.gw.watch(this.device + "/" + point, (p, key) => {
      fn(p, key);
      this.refresh();
    });
  }

  value(point) {
    const p = this.gw.get(this.device + "/" + point);
    return p && !p.stale ? p.value : undefined;
  }
}

/** "4:05" for 245 000 ms. */
function clockText(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

/** "12 s", "3 min", "2 h" ago, from an RFC 3339 time. */
function agoText(at) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(at)) / 1000));
  return s < 60 ? s + " s" : s < 3600 ? Math.floor(s / 60) + " min" : Math.floor(s / 3600) + " h";
}

/** A yes/no question over the whole panel, for a macro that changes the whole room. */
function confirmSheet() {
  const title = $("h3", { id: "confirm-title" });
  const no = $("button", { type: "button", "data-action": "cancel", text: "Cancel" });
  const yes = $("button", { type: "button", class: "is-primary", "data-action": "confirm" });
  const el = $("div", { class: "sheet", role: "alertdialog", "aria-modal": "true", "aria-labelledby": "confirm-title", hidden: true }, $("div", {}, title, $("div", { class: "row confirm-row" }, no, yes)));
  const close = () => (el.hidden = true);
  no.onclick = close;
  el.addEventListener("click", (e) => e.target === el && close());
  document.addEventListener("keydown", (e) => e.key === "Escape" && close());
  return {
    el,
    open(question, action, go) {
      title.textContent = question;
      yes.textContent = action;
      yes.onclick = () => {
        close();
        go();
      };
      el.hidden = false;
      yes.focus();
    },
  };
}

const MACRO_ERRORS = {
  in_use: "Another panel has the room",
  already_running: "Already running",
  forbidden: "This panel may not run it",
  cancelled: "Stopped",
};

/**
 * The scheduled-run countdown ("Room off in 4:32", with "Keep on"), shown over every page
 * while a `[[schedules]]` warning counts down on `@schedules`.
 */
export function scheduleBanner(gw) {
  const banner = $("div", { class: "schedule-banner", role: "alert", hidden: true });
  const counting = new Map();
  let timer;
  const draw = () => {
    banner.replaceChildren();
    for (const [name, v] of counting) {
      const left = Date.parse(v.at) - Date.now();
      if (v.state === "warning" && left > 0) {
        const keep = $("button", { type: "button", "data-action": "keep-on", "data-macro": name, text: "Keep on" });
        keep.onclick = () => {
          keep.disabled = true;
          gw.command("@schedules", "keep_on", { macro: name });
        };
        banner.append($("div", { class: "row" }, $("span", { class: "countdown", text: (v.label || humanize(name)) + " in " + clockText(left) }), keep));
      } else if (v.state === "kept_on" && Date.now() - Date.parse(v.at) < 0) {
        banner.append($("div", { class: "row" }, $("span", { class: "countdown", text: (v.label || humanize(name)) + " skipped: kept on by " + v.by.client })));
      }
    }
    banner.hidden = banner.children.length === 0;
    clearTimeout(timer);
    if (!banner.hidden) timer = setTimeout(draw, 1000);
  };
  gw.watch("@schedules/*", (p, key) => {
    const name = key.slice("@schedules/".length);
    if (p.value && typeof p.value === "object" && p.value.at) counting.set(name, p.value);
    else counting.delete(name);
    draw();
  });
  return banner;
}

function widgetRoot(type, w, label) {
  const root = $("div", { class: "widget", "data-widget": type, "data-device": w.device, "data-point": w.point });
  if (label && !w.hideLabel) root.append($("div", { class: "label", text: label }));
  return root;
}

/** A read-only value with its stale marking. */
function valueText(b, point, unit) {
  const el = $("span", { class: "value", "data-point": point });
  b.gw.watch(b.device + "/" + point, (p) => {
    el.textContent = p.value === undefined || p.value === null ? "—" : formatValue(p.value) + (unit ? " " + unit : "");
    el.classList.toggle("is-stale", p.stale && p.value !== undefined);
  });
  return el;
}

export const WIDGETS = {
  /** Runs a site macro: asks first when it has `confirm`, then shows its live progress. */
  macro(gw, w, ui) {
    const name = w.macro;
    const label = w.label || humanize(name);
    const root = $("div", { class: "widget macro", "data-widget": "macro", "data-macro": name });
    const button = $("button", { type: "button", class: "macro-run", "data-action": "run" }, label);
    const text = $("span", { class: "macro-text" });
    const bar = $("progress", { max: "1", value: "0", hidden: true, "aria-label": label + " progress" });
    const status = $("div", { class: "macro-progress", role: "status", "aria-live": "polite" }, text, bar);
    const error = $("div", { class: "error-text", role: "alert" });
    let pending = false;
    const refresh = () => {
      const disabled = gw.status.state !== "live" || pending;
      button.disabled = disabled;
      button.setAttribute("aria-disabled", String(disabled));
      button.classList.toggle("is-pending", pending);
      button.setAttribute("aria-busy", String(pending));
    };
    gw.onStatus(refresh);
    gw.onCommand((u) => {
      if (u.macro !== name) return;
      pending = u.phase !== "result";
      if (u.phase === "result") {
        button.dataset.result = u.result.ok ? "ok" : u.result.error.code;
        const words = !u.result.ok && MACRO_ERRORS[u.result.error.code];
        error.textContent = u.result.ok ? "" : (words ? words + ": " : "") + u.result.error.message;
      }
      refresh();
    });
    queueMicrotask(() => {
      if (gw.pending().some((u) => u.macro === name)) pending = true;
      refresh();
    });
    gw.watch("@macros/" + name, (p) => {
      const v = p.value;
      root.dataset.state = (v && v.state) || "";
      bar.hidden = !v || v.state !== "running";
      if (!v || typeof v !== "object") {
        text.textContent = "";
        return;
      }
      if (v.state === "running") {
        text.textContent = v.label + "… " + v.step + "/" + v.of + (v.expected_s ? " · about " + (v.expected_s < 90 ? v.expected_s + " s" : Math.round(v.expected_s / 60) + " min") : "");
        bar.max = v.of;
        bar.value = v.step;
      } else if (v.state === "queued") {
        text.textContent = "Waiting for the run before it";
      } else if (v.state === "done") {
        text.textContent = "✓ Done";
      } else {
        text.textContent = v.state === "cancelled" ? "Stopped" : "Failed";
        if (v.error && !pending) text.textContent += ": " + v.error.message;
      }
    });
    const confirm = w.confirm ? confirmSheet() : null;
    if (confirm) ui.pages.append(confirm.el);
    const run = () => {
      error.textContent = "";
      gw.runMacro(name);
    };
    button.addEventListener("click", () => {
      if (button.disabled) return;
      if (confirm) confirm.open(w.confirm, label, run);
      else run();
    });
    root.append(button, status, error);
    return root;
  },

  /** Who has the room (the control lease), and "Take control" when someone else has it. */
  lease(gw, w) {
    const root = $("div", { class: "widget lease", "data-widget": "lease" });
    if (w.label && !w.hideLabel) root.append($("div", { class: "label", text: w.label }));
    const who = $("span", { class: "value", "data-point": "controller" });
    const take = $("button", { type: "button", "data-action": "take-control", text: "Take control", hidden: true });
    const notice = $("div", { class: "error-text", role: "alert" });
    const mine = (c) => c === gw.client || (typeof c === "string" && c.startsWith(gw.client + " ("));
    const draw = () => {
      const holder = gw.get("@room/controller");
      const active = gw.get("@room/last_activity");
      const c = holder && holder.value;
      root.dataset.holder = c ? (mine(c) ? "me" : "other") : "none";
      if (!c) who.textContent = "Free: nobody has the room";
      else if (mine(c)) who.textContent = "You have the room";
      else who.textContent = "In use by " + c + (active && active.value ? " · active " + agoText(active.value) + " ago" : "");
      take.hidden = !c || mine(c);
    };
    gw.watch("@room/controller", draw);
    gw.watch("@room/last_activity", draw);
    // Until anyone has sent a command the gateway has no `@room` to tell of: free.
    gw.onStatus(draw);
    draw();
    setInterval(draw, 15000);
    gw.watch("@room/taken_over", (p) => {
      const v = p.value;
      const recent = v && Date.now() - Date.parse(v.at) < 5 * 60 * 1000;
      notice.textContent = recent && v.from === gw.client ? v.by + " took control of the room" : "";
    });
    take.onclick = () => gw.command("@room", "take_control", {});
    root.append($("div", { class: "row" }, who, take), notice);
    return root;
  },

  display_power(gw, w) {
    const root = widgetRoot("display_power", w, w.label || "Power");
    const b = new Binding(gw, w.device, root);
    const busy = () => POWER_BUSY[b.value("power")] !== undefined;
    const row = $(
      "div",
      { class: "row", role: "group", "aria-label": w.label || "Power" },
      b.button("On", "power", { on: true }, { action: "on", blocked: busy, selected: () => b.value("power") === "on" }),
      b.button("Off", "power", { on: false }, { action: "off", blocked: busy, selected: () => b.value("power") === "off" }),
    );
    const state = $("span", { class: "value", "data-point": "power" });
    b.watch("power", (p) => {
      state.textContent = p.value === undefined ? "—" : humanize(String(p.value));
      state.classList.toggle("is-stale", p.stale && p.value !== undefined);
    });
    const elapsed = $("span", { class: "elapsed" });
    const bar = $("progress", { "aria-label": "progress" });
    const chip = $("span", { class: "chip", role: "status", hidden: true }, $("span", { class: "phase" }), elapsed, bar);
    // How long this device took to warm up or cool down last time, remembered by the
    // panel, makes the bar determinate ("0:18 of ~0:40"); until then it is indeterminate.
    const memory = (phase) => "avgate:" + w.device + ":" + phase + "-ms";
    const clock = (ms) => {
      const s = Math.max(0, Math.round(ms / 1000));
      return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    };
    let since = 0;
    let phaseSeen = null;
    let timer;
    b.watch("power", (p) => {
      const phase = POWER_BUSY[p.value] && !p.stale ? p.value : null;
      const at = p.ts ? Math.min(Date.now(), Date.parse(p.ts)) : Date.now();
      if (phaseSeen && !phase && !p.stale && p.ts) {
        // The transition ended while we watched it: remember how long it took.
        localStorage.setItem(memory(phaseSeen), String(at - since));
      }
      if (phase === phaseSeen) return;
      phaseSeen = phase;
      chip.hidden = !phase;
      clearInterval(timer);
      if (!phase) return;
      since = at;
      // Until this panel has seen one, the profile's `[hints]` say how long it usually takes.
      const hinted = (phase === "warming" ? w.warm_up_s : w.cool_down_s) * 1000 || 0;
      const expected = Number(localStorage.getItem(memory(phase))) || hinted;
      chip.querySelector(".phase").textContent = POWER_BUSY[phase] + " ·";
      const show = () => {
        const spent = Date.now() - since;
        elapsed.textContent = clock(spent) + (expected ? " of ~" + clock(expected) : "");
        if (expected) {
          bar.max = expected;
          bar.value = Math.min(spent, expected);
        } else {
          bar.removeAttribute("value");
        }
      };
      show();
      timer = setInterval(show, 1000);
    });
    root.append(row, $("div", { class: "row" }, $("span", { class: "label", text: "Now:" }), state, chip), b.error);
    return root;
  },

  source_select(gw, w) {
    const root = widgetRoot("source_select", w, w.label || "Source");
    const b = new Binding(gw, w.device, root);
    const list = $("div", { class: "grid", role: "group", "aria-label": w.label || "Source" });
    const point = w.point || "input";
    const draw = (sources) => {
      list.replaceChildren(
        ...sources.map((s) =>
          b.button(s.label, w.command || "input", { [w.arg || "source"]: s.value }, { action: "source-" + s.value, selected: () => b.value(point) === s.value }),
        ),
      );
    };
    if (w.sources && w.sources.length) draw(w.sources);
    else {
      // The device's own list of inputs, as it reports them.
      let shown = "";
      b.watch(w.inputs_point || "inputs", (p) => {
        const names = Array.isArray(p.value) ? p.value : [];
        if (names.join() === shown) return;
        shown = names.join();
        b.controls = b.controls.filter((c) => !list.contains(c.el));
        draw(names.map((n) => ({ label: humanize(n), value: n })));
      });
    }
    b.watch(point, () => {});
    root.append(list, b.error);
    return root;
  },

  volume(gw, w) {
    const root = widgetRoot("volume", w, w.label || "Volume");
    const b = new Binding(gw, w.device, root);
    const suffix = w.output ? "." + w.output : "";
    const extra = w.output ? { output: w.output } : {};
    const min = w.min ?? 0;
    const max = w.max ?? 100;
    const slider = $("input", { type: "range", min, max, step: 1, "aria-label": w.label || "Volume", "data-action": "volume" });
    const level = $("span", { class: "level" });
    const percent = (v) => Math.round(((v - min) / (max - min)) * 100) + " %";
    let dragging = false;
    let lastSent = 0;
    let trailing;
    const sendLevel = () => {
      lastSent = Date.now();
      b.send("volume", { level: Number(slider.value), ...extra });
    };
    // At most ten a second while dragging, newest value wins, and the final one always goes.
    slider.addEventListener("input", () => {
      dragging = true;
      level.textContent = percent(Number(slider.value));
      clearTimeout(trailing);
      const wait = 100 - (Date.now() - lastSent);
      if (wait <= 0) sendLevel();
      else trailing = setTimeout(sendLevel, wait);
    });
    slider.addEventListener("change", () => {
      dragging = false;
      clearTimeout(trailing);
      sendLevel();
    });
    const volumeControl = b.control(slider, "volume", null);
    volumeControl.matches = () => false;
    b.watch("volume" + suffix, (p) => {
      if (dragging || typeof p.value !== "number") return;
      slider.value = p.value;
      level.textContent = percent(p.value);
      level.classList.toggle("is-stale", p.stale);
    });
    const row = $("div", { class: "volume" }, slider, level);
    if (w.mute !== false) {
      const mutePoint = (w.mute_point || "mute") + suffix;
      const arg = w.mute_arg || "on";
      // One switch; a tap sends the explicit opposite of what the device reports now.
      const mute = $("button", { type: "button", role: "switch", "data-action": "mute" }, "Mute");
      const control = b.control(mute, "mute", null, () => b.value(mutePoint) === undefined, () => b.value(mutePoint) === true);
      control.matches = (u) => u.command === "mute" && arg in u.args;
      mute.addEventListener("click", () => {
        if (!control.enabled() || control.pending) return;
        b.send("mute", { [arg]: b.value(mutePoint) !== true, ...extra });
      });
      b.watch(mutePoint, (p) => {
        mute.textContent = p.value === true ? "Muted" : "Mute";
        mute.setAttribute("aria-checked", String(p.value === true));
      });
      row.append(mute);
    }
    root.append(row, b.error);
    return root;
  },

  route(gw, w, ui) {
    const root = widgetRoot("route", w, w.label || "Routing");
    const b = new Binding(gw, w.device, root);
    const sources = w.sources && w.sources.length ? w.sources : range(1, w.inputs || 8).map((n) => ({ label: "Input " + n, input: n }));
    const name = (n) => (n === 0 ? "—" : (sources.find((s) => s.input === n) || { label: "Input " + n }).label);
    const tiles = $("div", { class: "routes" });
    const outputs = new Map();
    const sheet = chooser();
    const tile = (out) => {
      const current = $("span", { class: "in", text: "—" });
      const el = $("button", { type: "button", "data-action": "output-" + out, "aria-haspopup": "dialog" }, $("span", { class: "out", text: (w.output_labels && w.output_labels[out]) || "Output " + out }), current);
      b.control(el, "route", { __output: out }).matches = (u) => u.command === "route" && u.args.output === out;
      el.addEventListener("click", () => {
        if (!b.usable) return;
        sheet.open("Output " + out + ": choose a source", sources, b.value("route." + out), (input) => b.send("route", { input, output: out }));
      });
      outputs.set(out, current);
      return el;
    };
    const wanted = w.outputs && w.outputs.length ? w.outputs : null;
    if (wanted) for (const out of wanted) tiles.append(tile(out));
    b.watch("route.*", (p, key) => {
      const out = Number(key.split("route.")[1]);
      if (wanted && !wanted.includes(out)) return;
      if (!outputs.has(out)) {
        // Outputs appear as the switcher reports them, in order.
        const el = tile(out);
        const after = [...outputs.keys()].filter((o) => o > out).sort((x, y) => x - y)[0];
        tiles.insertBefore(el, after === undefined ? null : tiles.querySelector('[data-action="output-' + after + '"]'));
      }
      const text = outputs.get(out);
      text.textContent = p.value === undefined ? "—" : name(p.value);
      text.parentElement.dataset.input = p.value;
      text.classList.toggle("is-stale", p.stale);
    });
    root.append(tiles, b.error);
    ui.pages.append(sheet.el);
    return root;
  },

  camera(gw, w) {
    const root = widgetRoot("camera", w, w.label || "Camera");
    const b = new Binding(gw, w.device, root);
    const hold = (label, command, args, stop, action) => {
      const el = $("button", { type: "button", "data-action": action, "aria-label": action.replace("-", " ") }, label);
      const control = b.control(el, command, args);
      let holding = false;
      const release = () => {
        if (!holding) return;
        holding = false;
        b.send(command, stop);
      };
      el.addEventListener("pointerdown", (e) => {
        if (!control.enabled()) return;
        holding = true;
        try {
          el.setPointerCapture(e.pointerId);
        } catch {}
        b.send(command, args);
      });
      for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) el.addEventListener(type, release);
      window.addEventListener("blur", release);
      document.addEventListener("visibilitychange", release);
      gw.onStatus((s) => s.state !== "live" && release());
      return el;
    };
    const stop = { direction: "stop" };
    const d = (dir, label) => hold(label, "pan_tilt", { direction: dir }, stop, "pan-" + dir);
    const pad = $("div", { class: "dpad", role: "group", "aria-label": "Pan and tilt" },
      d("up_left", "↖"), d("up", "↑"), d("up_right", "↗"),
      d("left", "←"), $("span"), d("right", "→"),
      d("down_left", "↙"), d("down", "↓"), d("down_right", "↘"));
    const zoom = $("div", { class: "zoom", role: "group", "aria-label": "Zoom" },
      hold("+", "zoom", { action: "tele" }, { action: "stop" }, "zoom-tele"),
      hold("−", "zoom", { action: "wide" }, { action: "stop" }, "zoom-wide"));
    const presets = $("div", { class: "grid", role: "group", "aria-label": "Presets" });
    for (const p of w.presets || []) {
      presets.append(b.button(p.label, "preset", { action: "recall", number: p.number }, { action: "preset-" + p.number, selected: () => b.value("preset") === p.number }));
    }
    b.watch("preset", () => {});
    root.append($("div", { class: "camera" }, pad, zoom), presets, b.error);
    return root;
  },

  button(gw, w) {
    const root = widgetRoot("button", w, null);
    const b = new Binding(gw, w.device, root);
    root.append(b.button(w.label, w.command, w.args || {}, { action: w.action || "button" }), b.error);
    return root;
  },

  toggle(gw, w) {
    const root = widgetRoot("toggle", w, w.label);
    const b = new Binding(gw, w.device, root);
    const arg = w.arg || "on";
    const on = { ...(w.args || {}), [arg]: true };
    const off = { ...(w.args || {}), [arg]: false };
    const row = $("div", { class: "row", role: "group", "aria-label": w.label },
      b.button("On", w.command, on, { action: "on", selected: () => b.value(w.point) === true }),
      b.button("Off", w.command, off, { action: "off", selected: () => b.value(w.point) === false }));
    b.watch(w.point, () => {});
    if (w.detail_point) row.append(valueText(b, w.detail_point, w.detail_unit));
    root.append(row, b.error);
    return root;
  },

  status(gw, w) {
    const root = widgetRoot("status", w, null);
    const b = new Binding(gw, w.device, root);
    const list = $("dl", { class: "status" });
    for (const item of w.items || [{ point: w.point, label: w.label, unit: w.unit }]) {
      list.append($("dt", { text: item.label || humanize(item.point) }), $("dd", {}, valueText(b, item.point, item.unit)));
    }
    if (w.collapsed) root.append($("details", {}, $("summary", { text: "Details" }), list));
    else root.append(list);
    return root;
  },

  page_link(gw, w, ui) {
    const root = widgetRoot("page_link", w, null);
    root.append($("button", { type: "button", "data-action": "page-" + w.page, text: w.label, onclick: () => ui.showPage(w.page) }));
    return root;
  },
};

/** A sheet over the whole panel for picking one of many (a switcher's inputs). */
function chooser() {
  const title = $("h3");
  const list = $("div", { class: "grid", role: "radiogroup" });
  const close = $("button", { type: "button", text: "Cancel", "data-action": "close" });
  const el = $("div", { class: "sheet", role: "dialog", "aria-modal": "true", hidden: true }, $("div", {}, title, list, close));
  close.onclick = () => (el.hidden = true);
  el.addEventListener("click", (e) => e.target === el && (el.hidden = true));
  document.addEventListener("keydown", (e) => e.key === "Escape" && (el.hidden = true));
  return {
    el,
    open(text, sources, current, pick) {
      title.textContent = text;
      list.replaceChildren(
        ...[{ label: "Nothing", input: 0 }, ...sources].map((s) =>
          $("button", {
            type: "button",
            role: "radio",
            "aria-checked": String(s.input === current),
            class: s.input === current ? "is-selected" : "",
            "data-action": "input-" + s.input,
            text: s.label,
            onclick: () => {
              el.hidden = true;
              pick(s.input);
            },
          }),
        ),
      );
      el.hidden = false;
      list.querySelector("button").focus();
    },
  };
}

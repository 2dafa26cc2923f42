// The built-in panels: the room page at / and TOML panel pages at /panel/NAME. This
// module draws the frame (top bar, pages, the connection-lost overlay, sign-in) and puts
// the widgets (panel-widgets.js) in it; the room page's widgets come from room.js.

import { connect } from "/avgate.js";
import { $, humanize } from "/panel-dom.js";
import { WIDGETS, scheduleBanner } from "/panel-widgets.js";
import { roomSpec } from "/room.js";

const TOKEN_KEY = "avgate:token";

/**
 * Starts a panel. `spec` is a TOML panel page as JSON ({title, pages, idle_timeout_ms,
 * offline_message}), or null for the room page derived from the devices.
 */
export async function start(spec) {
  const params = new URLSearchParams(location.search);
  if (params.get("theme") === "light") document.documentElement.classList.add("light");
  const ui = frame(spec);
  let token = localStorage.getItem(TOKEN_KEY) || undefined;
  if (spec === null) {
    let devices = await fetchDevices(token);
    while (devices === "unauthorized") {
      token = await ui.signIn(token ? "That token was refused. Check it with whoever runs the AV system and try again." : "");
      devices = await fetchDevices(token);
    }
    spec = roomSpec(devices, await fetchMacros(token));
  }
  document.title = spec.title;
  ui.title.textContent = spec.title;
  const gw = connect({ client: clientName(spec), token, bind: false });
  window.avgatePanel = gw;
  ui.attach(gw, spec);
  gw.onStatus(async (s) => {
    if (s.state !== "unauthorized") return;
    const entered = await ui.signIn(token ? "That token was refused (" + (s.reason || "unauthorized") + "). Enter a valid one." : "");
    token = entered;
    gw.setToken(entered);
  });
  render(gw, spec, ui);
}

/** A stable client name per browser and page, so re-sent commands are recognised. */
function clientName(spec) {
  const key = "avgate:panel-client";
  let base = localStorage.getItem(key);
  if (!base) {
    base = "panel-" + Math.random().toString(36).slice(2, 8);
    localStorage.setItem(key, base);
  }
  return base + (spec && spec.name ? "-" + spec.name : "-room");
}

async function fetchMacros(token) {
  const response = await fetch("/api/macros", { headers: token ? { Authorization: "Bearer " + token } : {} });
  return response.ok ? response.json() : [];
}

async function fetchDevices(token) {
  const response = await fetch("/api/devices", { headers: token ? { Authorization: "Bearer " + token } : {} });
  if (response.status === 401) return "unauthorized";
  return response.json();
}

/** The parts every page has: the top bar, the pages, the offline overlay and sign-in. */
function frame(spec) {
  const title = $("h1", { text: (spec && spec.title) || "Room" });
  const link = $("span", { class: "link", role: "status", text: "Connecting…" });
  const clock = $("span", { class: "clock" });
  const statusLink = spec ? null : $("a", { class: "toplink", href: "/status", text: "Status" });
  const tick = () => (clock.textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  tick();
  setInterval(tick, 10000);
  const bar = $("header", { class: "topbar" }, title, link, clock, statusLink);
  const tabs = $("nav", { class: "tabs", hidden: true });
  const pages = $("div", { id: "pages" });
  const attempt = $("p", { id: "overlay-detail" });
  const retry = $("button", { type: "button", text: "Retry" });
  const help = $("p", { id: "overlay-help", text: (spec && spec.offline_message) || "" });
  const overlay = $(
    "div",
    { id: "overlay", role: "alertdialog", "aria-modal": "true", "aria-labelledby": "overlay-title", hidden: true },
    $("h2", { id: "overlay-title", text: "Can't reach the room controller" }),
    attempt,
    help,
    retry,
  );
  const refusal = $("p", { class: "error-text", role: "alert" });
  const input = $("input", { type: "password", name: "token", autocomplete: "current-password", "aria-label": "Panel token", placeholder: "Panel token" });
  const form = $(
    "form",
    {},
    $("h2", { text: "Sign in to this panel" }),
    $("p", { text: "This room controller needs a panel token. Type it in, or scan it with the tablet's camera and paste it." }),
    input,
    refusal,
    $("button", { type: "submit", text: "Sign in" }),
  );
  const signin = $("div", { id: "signin", hidden: true }, form);
  document.body.append(bar, tabs, pages, signin, overlay);
  return {
    title,
    tabs,
    pages,
    /** Shows the sign-in screen; resolves with the token entered. */
    signIn(message) {
      refusal.textContent = message;
      signin.hidden = false;
      pages.hidden = true;
      tabs.hidden = true;
      overlay.hidden = true;
      this.signingIn = true;
      input.focus();
      return new Promise((resolve) => {
        form.onsubmit = (e) => {
          e.preventDefault();
          const token = input.value.trim();
          if (!token) return;
          localStorage.setItem(TOKEN_KEY, token);
          signin.hidden = true;
          pages.hidden = false;
          tabs.hidden = tabs.children.length < 2;
          this.signingIn = false;
          resolve(token);
        };
      });
    },
    attach(gw, spec) {
      retry.onclick = () => gw.setToken(gw.token);
      gw.onStatus((s) => {
        const live = s.state === "live";
        link.textContent = live ? "Connected" : s.state === "connecting" ? "Connecting…" : s.state === "unauthorized" ? "Sign-in needed" : "Offline";
        link.className = "link " + (live ? "live" : "down");
        const down = s.state === "offline" || (s.state === "connecting" && s.attempt > 1);
        overlay.hidden = !down || this.signingIn;
        pages.inert = !live;
        document.body.classList.toggle("link-down", !live);
        if (down) {
          const retryIn = s.retryInMs ? " — next try in " + Math.ceil(s.retryInMs / 1000) + " s" : " — connecting";
          attempt.textContent = "Reconnecting (attempt " + Math.max(1, s.attempt) + ")" + retryIn + ". " + (s.reason ? "(" + s.reason + ")" : "");
        }
      });
      if (spec.idle_timeout_ms) idleReturn(gw, spec.idle_timeout_ms, () => this.showPage(spec.pages[0].id));
    },
  };
}

/** After `ms` without a touch, back to the home page (never while offline). */
function idleReturn(gw, ms, home) {
  let timer;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => (gw.status.state === "live" ? home() : arm()), ms);
  };
  for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, arm, { capture: true });
  arm();
}

function render(gw, spec, ui) {
  ui.tabs.before(scheduleBanner(gw));
  const sections = new Map();
  for (const page of spec.pages) {
    const main = $("main", { "data-page": page.id, hidden: true });
    for (const group of page.groups || page.widgets.map(widgetCard)) main.append(card(gw, group, ui));
    ui.pages.append(main);
    sections.set(page.id, main);
    ui.tabs.append($("button", { type: "button", "data-tab": page.id, text: page.title, onclick: () => ui.showPage(page.id) }));
  }
  ui.showPage = (id) => {
    for (const [pid, main] of sections) main.hidden = pid !== id;
    for (const tab of ui.tabs.children) tab.classList.toggle("is-selected", tab.dataset.tab === id);
    for (const sheet of document.querySelectorAll(".sheet")) sheet.hidden = true;
  };
  ui.tabs.hidden = spec.pages.length < 2;
  ui.showPage(spec.pages[0].id);
  document.body.dataset.ready = "true";
}

/** A page file's widget in a card of its own, titled with its label. */
function widgetCard(w) {
  const titled = !["button", "page_link", "macro"].includes(w.type);
  return { title: titled ? w.label || humanize(w.type) : "", device: titled ? w.device : undefined, widgets: [{ ...w, hideLabel: titled }], wide: w.type === "route" };
}

/** A card: a titled group of widgets, with an online badge when it is one device's. */
function card(gw, group, ui) {
  const el = $("section", { class: "card" + (group.wide ? " wide" : ""), "data-device": group.device });
  const heading = $("h2", {}, $("span", { class: "name", text: group.title }));
  if (group.title || group.device) el.append(heading);
  if (group.device) {
    const badge = $("span", { class: "badge", "data-badge": "" });
    heading.append(badge);
    gw.watch(group.device + "/online", (p) => {
      const text = !p.online ? (p.value && p.stale ? "Stale" : "Offline") : "Online";
      badge.textContent = text;
      badge.className = "badge " + text.toLowerCase();
    });
  }
  for (const w of group.widgets) {
    const make = WIDGETS[w.type];
    if (make) el.append(make(gw, w, ui));
  }
  return el;
}

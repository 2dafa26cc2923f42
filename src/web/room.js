// The room page: a card of widgets per device, derived from its profile through the
// shared point vocabulary (power, input, volume, mute, route.N, pan_tilt, outlet.N, ...).

import { humanize, range } from "/panel-dom.js";

const PRIMARY = new Set(["power", "input", "volume", "mute", "audio_mute", "video_mute", "preset"]);

/**
 * Derives the room page: the room's macros and who has the room first (from /api/macros),
 * then one card per device, from its profile.
 */
export function roomSpec(devices, macros = []) {
  // Displays and projectors first, then switchers, cameras and the rest, as a room user looks for them.
  const rank = (g) => ["source_select", "route", "camera"].findIndex((t) => g.widgets.some((w) => w.type === t)) >>> 0;
  const groups = devices.map((d) => deviceGroup(d)).sort((a, b) => rank(a) - rank(b));
  // Macros that change the whole room (a group such as "room") ask first.
  // "On" before "off", as the room is used.
  const order = (m) => (/(^|[-_])off$/.test(m.name) ? 1 : 0);
  const sorted = [...macros].sort((a, b) => order(a) - order(b) || a.name.localeCompare(b.name));
  const room = sorted.map((m) => ({ type: "macro", macro: m.name, label: m.label, confirm: m.group ? m.label + "?" : undefined }));
  groups.unshift({ title: "Room", widgets: [...room, { type: "lease" }], wide: true });
  return { title: "Room", name: null, pages: [{ id: "room", title: "Room", groups }] };
}

function deviceGroup(d) {
  const points = d.profile.points;
  const commands = d.profile.commands;
  const arg = (command, name) => commands[command] && commands[command].args[name];
  const widgets = [];
  const used = new Set(["online", "error"]);
  const device = d.id;

  if (points.power && arg("power", "on")) {
    const hints = d.profile.hints || {};
    widgets.push({ type: "display_power", device, label: "Power", warm_up_s: hints.warm_up_s, cool_down_s: hints.cool_down_s });
    used.add("power");
  }
  const source = arg("input", "source");
  if (points.input && source) {
    const sources = source.values && source.values.length ? source.values.map((v) => ({ label: humanize(v), value: v })) : null;
    // Without an enumeration in the profile, the device's own `inputs` point lists them.
    widgets.push({ type: "source_select", device, label: "Source", sources, inputs_point: "inputs" });
    used.add("input").add("inputs");
  }
  const level = arg("volume", "level");
  if (points.volume && level) {
    widgets.push({ type: "volume", device, label: "Volume", min: level.min ?? 0, max: level.max ?? 100, mute: !!(points.mute && arg("mute", "on")) });
    used.add("volume").add("mute");
  }
  if (arg("mute", "video") && arg("mute", "audio") && points.video_mute) {
    widgets.push({ type: "toggle", device, label: "Picture mute", point: "video_mute", command: "mute", arg: "video" });
    widgets.push({ type: "toggle", device, label: "Sound mute", point: "audio_mute", command: "mute", arg: "audio" });
    used.add("video_mute").add("audio_mute");
  }
  if (points["route.*"] && arg("route", "input") && arg("route", "output")) {
    const inputs = typeof d.inputs === "number" ? d.inputs : 8;
    widgets.push({ type: "route", device, label: "Routing", inputs });
    for (const p of ["route.*", "audio_route.*", "volume.*", "audio_mute.*", "video_mute.*"]) used.add(p);
  }
  if (arg("pan_tilt", "direction") || arg("zoom", "action")) {
    const number = arg("preset", "number");
    const count = number ? Math.min(8, (number.max ?? 7) - (number.min ?? 0) + 1) : 0;
    const presets = range(0, count - 1).map((i) => ({ label: "Preset " + (i + (number.min ?? 0) + 1), number: i + (number.min ?? 0) }));
    widgets.push({ type: "camera", device, label: "Camera", presets });
    for (const p of ["pan", "tilt", "zoom", "preset"]) used.add(p);
  }
  const writable = arg("write", "point");
  if (writable && writable.values) {
    for (const p of writable.values) {
      if (!points[p] || points[p].type !== "bool") continue;
      const n = p.split(".")[1];
      const current = n && points["current." + n] ? "current." + n : undefined;
      widgets.push({ type: "toggle", device, label: humanize(p), point: p, command: "write", args: { point: p }, arg: "value", detail_point: current, detail_unit: current && points[current].unit });
      used.add(p);
      if (current) used.add(current);
    }
  }
  const rest = Object.entries(points).filter(([name, spec]) => !used.has(name) && !name.includes("*") && spec.type !== "array");
  rest.sort(([a], [b]) => (PRIMARY.has(b) ? 1 : 0) - (PRIMARY.has(a) ? 1 : 0) || a.localeCompare(b, undefined, { numeric: true }));
  if (rest.length) {
    widgets.push({ type: "status", device, collapsed: widgets.length > 0, items: rest.map(([point, spec]) => ({ point, label: humanize(point), unit: spec.unit })) });
  }
  const wide = widgets.some((w) => w.type === "route") || widgets.filter((w) => w.type === "toggle").length > 4;
  return { title: d.name, device, widgets, wide };
}

// DOM helpers and words shared by the built-in panels.

/** Creates an element: attributes (`on...` are listeners, `text` is text), then children. */
export const $ = (tag, attrs = {}, ...children) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
};

const SPELLED = { displayport: "DisplayPort", magicinfo: "MagicInfo", room_pc: "Room PC" };

/** `lamp_hours` → "Lamp hours", `route.3` → "Route 3"; acronyms kept. */
export function humanize(name) {
  if (SPELLED[name]) return SPELLED[name];
  const words = String(name).replace(/[._]/g, " ").trim();
  const upper = /^(hdmi|usb|dvi|vga|pc|pjlink|id|ip|av|sdi|rgb)(\d*)$/i;
  return words
    .split(/\s+/)
    .map((w, i) => (upper.test(w) ? w.toUpperCase() : i === 0 ? w[0].toUpperCase() + w.slice(1) : w))
    .join(" ")
    .replace(/\b(HDMI|RGB|DVI|USB|VGA|SDI|PC)(\d)/g, "$1 $2");
}

/** The numbers from..to. */
export function range(from, to) {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

// DOM helpers. Everything that comes from memory is added as text (text nodes,
// textContent, attribute values), never parsed as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'hidden' && el instanceof HTMLElement) el.hidden = true;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('p', {class: 'x'}, 'text', otherNode). Strings become text nodes. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, same rules. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

function toDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "2024-03-02 09:15" in UTC (memory times are UTC; the page says so). */
export function fmtTime(iso) {
  const d = iso ? toDate(iso) : null;
  return d ? d.toISOString().slice(0, 16).replace('T', ' ') : '—';
}

export function fmtDay(iso) {
  const d = iso ? toDate(iso) : null;
  return d ? d.toISOString().slice(0, 10) : '—';
}

export function timeEl(iso, attrs = {}) {
  return h('time', { datetime: iso || null, title: iso ? `${iso} (UTC)` : null, ...attrs }, fmtTime(iso));
}

/** A session's span, as short as its dates allow. */
export function fmtRange(first, last) {
  const a = fmtTime(first);
  const b = fmtTime(last);
  if (a === b) return a;
  if (a.slice(0, 10) === b.slice(0, 10)) return `${a}–${b.slice(11)}`;
  return `${a} → ${b}`;
}

export function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function truncate(text, max) {
  const t = String(text ?? '');
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

export function shortId(id) {
  return String(id ?? '').slice(0, 8);
}

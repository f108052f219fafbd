// A note's neighbourhood as inline SVG. The note sits in the middle; the notes that link
// to it are on its left, the notes it links to on its right; one arrow per link
// (source -> target) labelled with the link's kind. Neighbours are buttons that open them.
import { s, truncate } from './dom.js';

const KINDS = ['updates', 'contradicts', 'elaborates', 'related'];
const ROW = 46;
let seq = 0;

function kindClass(kind) {
  return KINDS.includes(kind) ? kind : 'other';
}

/**
 * center: the note; links: its LinkOut list (each touching center); neighbours: Map id ->
 * NoteOut, or null for a note that no longer exists; onOpen(id): a neighbour was activated.
 */
export function neighbourhoodSvg(center, links, neighbours, onOpen) {
  const left = [];
  const right = [];
  for (const nid of neighbours.keys()) {
    const outgoing = links.some((l) => l.source_id === center.id && l.target_id === nid);
    (outgoing ? right : left).push(nid);
  }
  const W = 640;
  const rows = Math.max(left.length, right.length, 1);
  const H = Math.max(150, rows * ROW + 50);
  let cx = W / 2;
  let lx = 200;
  let rx = 440;
  if (!left.length) { cx = 170; rx = 360; }
  if (!right.length) { cx = 470; lx = 280; }
  const cy = H / 2;
  const id = ++seq;

  const pos = new Map([[center.id, { x: cx, y: cy, r: 13 }]]);
  const column = (ids, x) => ids.forEach((nid, i) => {
    pos.set(nid, { x, y: cy + (i - (ids.length - 1) / 2) * ROW, r: 9, side: x < cx ? 'left' : 'right' });
  });
  column(left, lx);
  column(right, rx);

  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'graph', role: 'group', 'data-testid': 'note-graph',
    'aria-label': `Graph of this note's ${links.length} links`,
  });
  const defs = s('defs');
  for (const kind of [...KINDS, 'other']) {
    defs.append(s('marker', {
      id: `arrow-${kind}-${id}`, viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '7',
      markerHeight: '7', orient: 'auto-start-reverse', class: `mk-${kind}`,
    }, s('path', { d: 'M0,0 L10,5 L0,10 z' })));
  }
  svg.append(defs);

  const edges = s('g', { class: 'edges', 'aria-hidden': 'true' });
  for (const link of links) {
    const a = pos.get(link.source_id);
    const b = pos.get(link.target_id);
    if (!a || !b) continue;
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const len = Math.hypot(dx, dy) || 1;
    const x1 = a.x + (dx / len) * (a.r + 2);
    const y1 = a.y + (dy / len) * (a.r + 2);
    const x2 = b.x - (dx / len) * (b.r + 3);
    const y2 = b.y - (dy / len) * (b.r + 3);
    const kind = kindClass(link.kind);
    // the label sits nearer the neighbour's end, where the fanned-out edges are apart
    const far = a === pos.get(center.id) ? 0.62 : 0.38;
    edges.append(s('g', { class: `edge ${kind}` },
      s('title', {}, `${link.kind}: ${link.reason || ''}`),
      s('line', { x1, y1, x2, y2, 'marker-end': `url(#arrow-${kind}-${id})` }),
      s('text', { x: x1 + (x2 - x1) * far, y: y1 + (y2 - y1) * far - 4, 'text-anchor': 'middle', class: 'edge-label' },
        link.kind)));
  }
  svg.append(edges);

  const nodes = s('g', { class: 'nodes' });
  const c = pos.get(center.id);
  nodes.append(s('g', { class: `node center ${center.status}`, 'aria-hidden': 'true' },
    s('title', {}, center.content),
    s('circle', { cx: c.x, cy: c.y, r: c.r }),
    s('text', { x: c.x, y: c.y + c.r + 16, 'text-anchor': 'middle', class: 'node-label center-label' },
      truncate(center.content, 30))));
  for (const nid of [...left, ...right]) {
    const p = pos.get(nid);
    const note = neighbours.get(nid);
    const text = note ? note.content : '(a note that no longer exists)';
    const room = p.side === 'left' ? p.x - p.r - 8 : W - (p.x + p.r + 8);
    const g = s('g', {
      class: `node ${note ? note.status : 'gone'}`, tabindex: note ? '0' : null, role: note ? 'button' : null,
      'aria-label': note ? `Open linked note: ${truncate(text, 120)}` : null, 'data-testid': 'graph-node',
      'data-note-id': nid,
    },
    s('title', {}, text),
    s('circle', { cx: p.x, cy: p.y, r: p.r }),
    s('text', {
      x: p.side === 'left' ? p.x - p.r - 6 : p.x + p.r + 6, y: p.y + 4,
      'text-anchor': p.side === 'left' ? 'end' : 'start', class: 'node-label',
    }, truncate(text, Math.max(12, Math.floor(room / 6.6)))));
    if (note) {
      g.addEventListener('click', () => onOpen(nid));
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); onOpen(nid); }
      });
    }
    nodes.append(g);
  }
  svg.append(nodes);
  return svg;
}

// memstrata memory browser: a client of the public REST API (/v1) and nothing else.
// Memory text is untrusted: it only ever reaches the page as text (see dom.js).
import { api, ApiError } from './api.js';
import { clear, fmtDay, fmtRange, fmtTime, h, plural, shortId, timeEl, truncate } from './dom.js';
import { neighbourhoodSvg } from './graph.js';

const PAGE = { users: 100, sessions: 50, episodes: 50, notes: 50 };
const KEY_STORE = 'memstrata.key';
const USER_STORE = 'memstrata.user';
const MAX_NEIGHBOURS = 12;

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

const state = {
  key: null,
  me: null,
  user: null,
  gen: 0,             // bumped on every user switch / sign-out: late answers for an old view are dropped
  tab: 'timeline',
  usersNext: null,
  sessionsNext: null,
  notesNext: null,
  notesLoaded: false,
  summaryLoaded: false,
  openNoteId: null,
};
const sessionState = new WeakMap();  // <li class=session> -> {session, next, loaded, count}

// -- plumbing ------------------------------------------------------------------
function userPath(path = '') {
  return `/v1/users/${enc(state.user)}${path}`;
}

function call(path, opts = {}) {
  return api(path, { ...opts, key: state.key });
}

function showBanner(message) {
  $('banner-text').textContent = message;
  $('banner').hidden = false;
}

function hideBanner() {
  $('banner').hidden = true;
  $('banner-text').textContent = '';
}

let noticeTimer = null;
function notice(message) {
  $('notice').textContent = message;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { $('notice').textContent = ''; }, 6000);
}

function report(err) {
  if (err instanceof ApiError && err.status === 401) {
    signOut(`Signed out: ${err.detail}`);
    return;
  }
  if (err && err.name === 'AbortError') return;
  console.error(err);
  showBanner(err instanceof ApiError ? err.detail : `Something went wrong: ${err && err.message ? err.message : err}`);
}

/** Wrap an event handler: API errors go to the banner (401: back to sign-in). */
function guard(fn) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (err) {
      report(err);
    }
  };
}

/** Disable a button while its action runs. */
function busy(button, fn) {
  return guard(async (...args) => {
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      await fn(...args);
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  });
}

// -- sign-in ---------------------------------------------------------------------
function setSigninError(message) {
  const el = $('signin-error');
  el.textContent = message || '';
  el.hidden = !message;
  $('key-input').setAttribute('aria-invalid', message ? 'true' : 'false');
}

function showSignin() {
  $('app').hidden = true;
  $('signin').hidden = false;
  $('whoami').hidden = true;
  $('sign-out').hidden = true;
}

async function signIn(rawKey) {
  const key = String(rawKey || '').trim();
  setSigninError(null);
  if (!key) {
    setSigninError('Enter an API key.');
    return;
  }
  let me;
  try {
    me = await api('/v1/me', { key });
  } catch (err) {
    sessionStorage.removeItem(KEY_STORE);
    showSignin();
    setSigninError(`Sign-in failed: ${err instanceof ApiError ? err.detail : err.message}`);
    $('key-input').focus();
    return;
  }
  if (me.admin) {
    showSignin();
    setSigninError('This is an admin key: it manages keys and cannot read memory. Sign in with a data key.');
    return;
  }
  state.key = key;
  state.me = me;
  sessionStorage.setItem(KEY_STORE, key);
  $('key-input').value = '';
  hideBanner();
  renderWhoami();
  $('signin').hidden = true;
  $('app').hidden = false;
  $('sign-out').hidden = false;
  try {
    await loadUsers(true);
  } catch (err) {
    report(err);
  }
}

function signOut(message) {
  state.key = null;
  state.me = null;
  state.user = null;
  state.gen += 1;
  sessionStorage.removeItem(KEY_STORE);
  sessionStorage.removeItem(USER_STORE);
  hideBanner();
  resetViews();
  clear($('user-select'));
  showSignin();
  setSigninError(message || null);
  $('key-input').focus();
}

function renderWhoami() {
  const me = state.me;
  const el = clear($('whoami'));
  el.append(
    h('span', { class: 'pill' }, 'namespace ', h('strong', {}, me.namespace ?? '—')),
    h('span', { class: 'pill' }, me.user_id ? ['user ', h('strong', {}, me.user_id)] : 'all users'),
    h('span', { class: 'pill muted', title: `key ${me.key_id}` }, 'key ', h('code', {}, me.key_id),
      me.label ? ` · ${me.label}` : null),
  );
  el.hidden = false;
}

/** `#key=msk_...` (the demo prints such a URL): read it, then drop it from the address bar. */
function takeFragmentKey() {
  const m = /^#key=([^&]*)/.exec(window.location.hash);
  if (!m) return null;
  history.replaceState(null, '', window.location.pathname + window.location.search);
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return m[1];
  }
}

// -- users -------------------------------------------------------------------------
async function loadUsers(reset) {
  const gen = state.gen;
  const offset = reset ? 0 : state.usersNext ?? 0;
  const page = await call(`/v1/users?limit=${PAGE.users}&offset=${offset}`);
  if (gen !== state.gen) return;
  const select = $('user-select');
  if (reset) clear(select);
  for (const id of page.items) select.append(h('option', { value: id }, id));
  state.usersNext = page.next_offset;
  $('more-users').hidden = page.next_offset == null;
  select.disabled = state.me.user_id != null || select.options.length === 0;
  if (!reset) return;
  if (page.items.length === 0) {
    await selectUser(null);
    return;
  }
  const saved = sessionStorage.getItem(USER_STORE);
  const pick = saved && page.items.includes(saved) ? saved : page.items[0];
  select.value = pick;
  await selectUser(pick);
}

function resetViews() {
  clear($('sessions'));
  clear($('notes'));
  clear($('hits'));
  clear($('summary'));
  clear($('user-stats'));
  closeNote();
  $('search-status').textContent = '';
  $('more-sessions').hidden = true;
  $('more-notes').hidden = true;
  $('sessions-empty').hidden = true;
  $('notes-empty').hidden = true;
  $('erase-confirm').value = '';
  $('erase-button').disabled = true;
  state.sessionsNext = null;
  state.notesNext = null;
  state.notesLoaded = false;
  state.summaryLoaded = false;
}

async function selectUser(id) {
  state.user = id;
  state.gen += 1;
  resetViews();
  const none = !id;
  $('views').hidden = none;
  $('no-users').hidden = !none;
  if (none) {
    const me = state.me;
    $('no-users').textContent = me.user_id
      ? `Nothing is stored for user ${me.user_id} yet.`
      : `No users in namespace ${me.namespace} yet: add memories through the API first.`;
    sessionStorage.removeItem(USER_STORE);
    return;
  }
  sessionStorage.setItem(USER_STORE, id);
  $('erase-user-name').textContent = id;
  await Promise.all([loadStats(), loadSessions(true), refreshTab()]);
}

async function loadStats() {
  const gen = state.gen;
  let st;
  try {
    st = await call(userPath('/stats'));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && gen === state.gen) {
      // The user has no turns left (last one deleted, or erased elsewhere): refresh the list.
      await loadUsers(true);
      return;
    }
    throw err;
  }
  if (gen !== state.gen) return;
  const parts = [
    plural(st.sessions, 'session'),
    plural(st.episodes, 'turn'),
    st.first_time ? `${fmtDay(st.first_time)} → ${fmtDay(st.last_time)}` : null,
    st.pending_notes ? `${st.pending_notes} turns waiting for note processing` : null,
  ].filter(Boolean);
  $('user-stats').textContent = parts.join(' · ');
}

// -- tabs ----------------------------------------------------------------------------
const TABS = ['timeline', 'notes', 'search', 'summary'];

function selectTab(name, { focus = false } = {}) {
  state.tab = name;
  for (const t of TABS) {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute('aria-selected', on ? 'true' : 'false');
    tab.tabIndex = on ? 0 : -1;
    $(`view-${t}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  return refreshTab();
}

async function refreshTab() {
  if (!state.user) return;
  if (state.tab === 'notes' && !state.notesLoaded) await loadNotes(true);
  if (state.tab === 'summary' && !state.summaryLoaded) await loadSummary();
}

function onTabKey(ev) {
  const i = TABS.indexOf(state.tab);
  let next = null;
  if (ev.key === 'ArrowRight') next = TABS[(i + 1) % TABS.length];
  else if (ev.key === 'ArrowLeft') next = TABS[(i + TABS.length - 1) % TABS.length];
  else if (ev.key === 'Home') next = TABS[0];
  else if (ev.key === 'End') next = TABS[TABS.length - 1];
  if (next) {
    ev.preventDefault();
    guard(() => selectTab(next, { focus: true }))();
  }
}

// -- timeline: sessions and their turns ------------------------------------------------
async function loadSessions(reset) {
  const gen = state.gen;
  const offset = reset ? 0 : state.sessionsNext ?? 0;
  const page = await call(userPath(`/sessions?limit=${PAGE.sessions}&offset=${offset}`));
  if (gen !== state.gen) return;
  const list = $('sessions');
  if (reset) clear(list);
  for (const session of page.items) list.append(sessionItem(session));
  state.sessionsNext = page.next_offset;
  $('more-sessions').hidden = page.next_offset == null;
  $('sessions-empty').hidden = list.children.length > 0;
}

let domSeq = 0;
function sessionItem(session) {
  const epsId = `episodes-${++domSeq}`;
  const li = h('li', { class: 'session', 'data-testid': 'session', 'data-session-id': session.session_id });
  const st = { session, next: 0, loaded: false, count: session.n_episodes };
  sessionState.set(li, st);
  const toggle = h('button', {
    type: 'button', class: 'toggle', 'aria-expanded': 'false', 'aria-controls': epsId, 'data-testid': 'session-toggle',
  }, h('span', { class: 'chev', 'aria-hidden': 'true' }), h('span', { class: 'sid' }, session.session_id));
  const count = h('span', { class: 'count', 'data-testid': 'session-count' }, plural(st.count, 'turn'));
  const meta = h('span', { class: 'meta' },
    h('time', { datetime: session.first_time }, fmtRange(session.first_time, session.last_time)), ' · ', count);
  const del = h('button', {
    type: 'button', class: 'danger small', 'data-testid': 'delete-session',
    'aria-label': `Delete session ${session.session_id}`,
  }, 'Delete session');
  const list = h('ol', { class: 'episodes', id: epsId, hidden: true, 'data-testid': 'episodes' });
  const more = h('button', { type: 'button', class: 'more', hidden: true, 'data-testid': 'more-episodes' }, 'More turns');
  toggle.addEventListener('click', guard(() => toggleSession(li)));
  del.addEventListener('click', busy(del, () => deleteSession(li)));
  more.addEventListener('click', busy(more, () => loadEpisodes(li)));
  li.append(h('div', { class: 'session-head' }, toggle, meta, del), list, more);
  return li;
}

function sessionParts(li) {
  return {
    toggle: li.querySelector('[data-testid="session-toggle"]'),
    list: li.querySelector('ol.episodes'),
    more: li.querySelector('[data-testid="more-episodes"]'),
    count: li.querySelector('[data-testid="session-count"]'),
  };
}

async function toggleSession(li, open) {
  const { toggle, list, more } = sessionParts(li);
  const st = sessionState.get(li);
  const expand = open ?? toggle.getAttribute('aria-expanded') !== 'true';
  toggle.setAttribute('aria-expanded', expand ? 'true' : 'false');
  li.classList.toggle('open', expand);
  list.hidden = !expand;
  more.hidden = !expand || st.next == null;
  if (expand && !st.loaded) await loadEpisodes(li);
}

async function loadEpisodes(li) {
  const gen = state.gen;
  const st = sessionState.get(li);
  if (st.next == null) return;
  const { list, more } = sessionParts(li);
  const page = await call(userPath(
    `/episodes?session_id=${enc(st.session.session_id)}&limit=${PAGE.episodes}&offset=${st.next}`));
  if (gen !== state.gen) return;
  for (const ep of page.items) list.append(episodeItem(ep, li));
  st.loaded = true;
  st.next = page.next_offset;
  more.hidden = st.next == null || list.hidden;
}

function episodeItem(ep, sessionLi) {
  const role = String(ep.role || '').replace(/[^a-z]/g, '');
  const del = h('button', {
    type: 'button', class: 'danger small ghost', 'data-testid': 'delete-episode', 'aria-label': 'Delete this turn',
  }, 'Delete');
  const li = h('li', {
    class: `episode role-${role}`, 'data-testid': 'episode', 'data-episode-id': ep.id, tabindex: '-1',
  },
  h('div', { class: 'ep-head' },
    h('span', { class: 'speaker', 'data-testid': 'episode-speaker' }, ep.speaker || ep.role),
    ep.speaker && ep.speaker !== ep.role ? h('span', { class: 'role' }, ep.role) : null,
    timeEl(ep.event_time, { 'data-testid': 'episode-date' }),
    ep.agent_id ? h('span', { class: 'role' }, `agent ${ep.agent_id}`) : null,
    flagBadge(ep.flags),
    h('span', { class: 'spacer' }),
    del),
  h('p', { class: 'content', 'data-testid': 'episode-content' }, ep.content));
  del.addEventListener('click', busy(del, () => deleteEpisode(li, sessionLi)));
  return li;
}

function findSession(sessionId) {
  for (const li of $('sessions').children) if (li.dataset.sessionId === sessionId) return li;
  return null;
}

function findEpisode(sessionLi, episodeId) {
  for (const li of sessionParts(sessionLi).list.children) if (li.dataset.episodeId === episodeId) return li;
  return null;
}

/** Provenance and search hits: open the turn in its session, highlighted among its neighbours. */
async function showEpisode(episodeId) {
  const gen = state.gen;
  let ep;
  try {
    ep = await call(userPath(`/episodes/${enc(episodeId)}`));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      showBanner(`That turn no longer exists (${shortId(episodeId)}…): it was deleted.`);
      return;
    }
    throw err;
  }
  if (gen !== state.gen) return;
  await selectTab('timeline');
  let sessionLi = findSession(ep.session_id);
  while (!sessionLi && state.sessionsNext != null && gen === state.gen) {
    await loadSessions(false);
    sessionLi = findSession(ep.session_id);
  }
  if (!sessionLi || gen !== state.gen) return;
  await toggleSession(sessionLi, true);
  const st = sessionState.get(sessionLi);
  let el = findEpisode(sessionLi, episodeId);
  while (!el && st.next != null && gen === state.gen) {
    await loadEpisodes(sessionLi);
    el = findEpisode(sessionLi, episodeId);
  }
  if (!el) return;
  for (const old of document.querySelectorAll('.episode.highlight')) {
    old.classList.remove('highlight');
    old.removeAttribute('aria-current');
  }
  el.classList.add('highlight');
  el.setAttribute('aria-current', 'true');
  el.scrollIntoView({ block: 'center', behavior: 'instant' });
  el.focus({ preventScroll: true });
}

// -- deletes -----------------------------------------------------------------------------
function setSessionCount(li, n) {
  const st = sessionState.get(li);
  st.count = n;
  sessionParts(li).count.textContent = plural(n, 'turn');
}

function afterDelete({ episodeId = null, sessionId = null }) {
  state.notesLoaded = false;
  state.summaryLoaded = false;
  clear($('notes'));
  closeNote();
  for (const hit of $('hits').children) {
    if (hit.dataset.episodeId === episodeId || hit.dataset.sessionId === sessionId) {
      if (!hit.classList.contains('deleted')) hit.querySelector('.hit-head').append(h('span', { class: 'badge status-deleted' }, 'deleted'));
      hit.classList.add('deleted');
      const btn = hit.querySelector('[data-testid="hit-context"]');
      if (btn) btn.disabled = true;
    }
  }
  return Promise.all([loadStats(), refreshTab()]);
}

async function deleteEpisode(li, sessionLi) {
  const text = li.querySelector('.content').textContent;
  if (!window.confirm(`Delete this turn, and the notes derived from it?\n\n“${truncate(text, 200)}”`)) return;
  const id = li.dataset.episodeId;
  const out = await call(userPath(`/episodes/${enc(id)}`), { method: 'DELETE' });
  const st = sessionState.get(sessionLi);
  li.remove();
  if (st.next != null) st.next = Math.max(0, st.next - 1);
  setSessionCount(sessionLi, Math.max(0, st.count - 1));
  if (st.count === 0) {
    sessionLi.remove();
    $('sessions-empty').hidden = $('sessions').children.length > 0;
  }
  notice(`Deleted ${plural(out.deleted, 'turn')}.`);
  await afterDelete({ episodeId: id });
}

async function deleteSession(li) {
  const st = sessionState.get(li);
  const sid = st.session.session_id;
  if (!window.confirm(`Delete session “${sid}” (${plural(st.count, 'turn')}) and everything derived from it?`)) return;
  const deleted = (await call(userPath(`/sessions/${enc(sid)}`), { method: 'DELETE' })).deleted;
  li.remove();
  if (state.sessionsNext != null) state.sessionsNext = Math.max(0, state.sessionsNext - 1);
  $('sessions-empty').hidden = $('sessions').children.length > 0;
  notice(`Deleted session ${sid}: ${plural(deleted, 'turn')}.`);
  await afterDelete({ sessionId: sid });
}

async function eraseUser(ev) {
  ev.preventDefault();
  const user = state.user;
  if (!user || $('erase-confirm').value !== user) return;
  const out = await call(userPath(''), { method: 'DELETE' });
  notice(`Erased user ${user}: ${plural(out.deleted, 'turn')}.`);
  sessionStorage.removeItem(USER_STORE);
  $('danger-zone').open = false;
  $('erase-confirm').value = '';
  await loadUsers(true);
}

// -- notes ---------------------------------------------------------------------------------
function validity(note) {
  if (!note.valid_from && !note.valid_to) return 'validity unknown';
  if (!note.valid_to) return `valid since ${fmtTime(note.valid_from)}`;
  return `valid ${fmtTime(note.valid_from)} → ${fmtTime(note.valid_to)}`;
}

/** Memory-poisoning flags (reason codes): the turn is kept but left out of context(). */
function flagBadge(flags) {
  if (!flags || flags.length === 0) return null;
  return h('span', {
    class: 'badge status-deleted', 'data-testid': 'flagged',
    title: 'Reads as instructions to a model: left out of context() unless asked for',
  }, `flagged: ${flags.join(', ')}`);
}

function statusBadge(status) {
  const cls = String(status || '').replace(/[^a-z]/g, '');
  return h('span', { class: `badge status-${cls}`, 'data-testid': 'note-status-badge' }, status);
}

function chips(note) {
  const items = [
    ...note.keywords.map((k) => h('li', { class: 'chip' }, k)),
    ...note.tags.map((t) => h('li', { class: 'chip tag' }, `#${t}`)),
  ];
  return items.length ? h('ul', { class: 'chips', 'aria-label': 'Keywords and tags' }, items) : null;
}

function sourceButtons(note) {
  const ids = note.source_episode_ids;
  if (!ids.length) return null;
  const single = ids.length === 1 && note.session_ids.length === 1;
  return h('p', { class: 'sources' }, 'From ',
    ids.map((id, i) => {
      const btn = h('button', {
        type: 'button', class: 'linklike', 'data-testid': 'note-source', 'data-episode-id': id,
        title: `turn ${id}`,
      }, single ? `a turn in ${note.session_ids[0]}` : `turn ${i + 1}`);
      btn.addEventListener('click', guard(() => showEpisode(id)));
      return [i ? ', ' : '', btn];
    }),
    !single && note.session_ids.length ? ` (sessions ${note.session_ids.join(', ')})` : null);
}

async function loadNotes(reset) {
  const gen = state.gen;
  const status = $('note-status').value;
  const offset = reset ? 0 : state.notesNext ?? 0;
  const filter = status === 'all' ? '' : `&status=${enc(status)}`;
  const page = await call(userPath(`/notes?limit=${PAGE.notes}&offset=${offset}${filter}`));
  if (gen !== state.gen || status !== $('note-status').value) return;
  const list = $('notes');
  if (reset) clear(list);
  for (const note of page.items) list.append(noteItem(note));
  state.notesLoaded = true;
  state.notesNext = page.next_offset;
  $('more-notes').hidden = page.next_offset == null;
  $('notes-empty').hidden = list.children.length > 0;
  markOpenNote();
}

function noteItem(note) {
  const open = h('button', { type: 'button', class: 'note-open linklike', 'data-testid': 'note-open' }, note.content);
  open.addEventListener('click', guard(() => openNote(note.id)));
  let superseded = null;
  if (note.superseded_by) {
    const btn = h('button', {
      type: 'button', class: 'linklike', 'data-testid': 'note-superseded-by', 'data-note-id': note.superseded_by,
    }, 'the newer note');
    btn.addEventListener('click', guard(() => openNote(note.superseded_by)));
    superseded = h('span', {}, 'superseded by ', btn);
  }
  return h('li', {
    class: `note status-${String(note.status).replace(/[^a-z]/g, '')}`, 'data-testid': 'note', 'data-note-id': note.id,
  },
  open,
  h('p', { class: 'meta' }, statusBadge(note.status), ' ',
    h('span', { 'data-testid': 'note-validity' }, validity(note)), superseded ? ' · ' : null, superseded),
  chips(note),
  sourceButtons(note));
}

function markOpenNote() {
  for (const li of $('notes').children) {
    if (li.dataset.noteId === state.openNoteId) li.setAttribute('aria-current', 'true');
    else li.removeAttribute('aria-current');
  }
}

function closeNote() {
  state.openNoteId = null;
  const aside = $('note-detail');
  clear(aside);
  aside.hidden = true;
  markOpenNote();
}

async function fetchNeighbour(id) {
  try {
    return [id, await call(userPath(`/notes/${enc(id)}`))];
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return [id, null];
    throw err;
  }
}

async function openNote(id) {
  const gen = state.gen;
  if (state.tab !== 'notes') await selectTab('notes');
  const [note, history] = await Promise.all([
    call(userPath(`/notes/${enc(id)}`)),
    call(userPath(`/notes/${enc(id)}/history`)),
  ]);
  const links = note.links || [];
  const others = [...new Set(links.map((l) => (l.source_id === id ? l.target_id : l.source_id)))];
  const neighbours = new Map(await Promise.all(others.slice(0, MAX_NEIGHBOURS).map(fetchNeighbour)));
  if (gen !== state.gen) return;
  state.openNoteId = id;
  renderNote(note, history, neighbours, others.length);
  markOpenNote();
}

function noteLabel(id, neighbours) {
  const n = neighbours.get(id);
  return n ? truncate(n.content, 90) : `note ${shortId(id)}…`;
}

function renderNote(note, history, neighbours, nOthers) {
  const aside = clear($('note-detail'));
  const close = h('button', { type: 'button', class: 'ghost small', 'data-testid': 'note-close' }, 'Close');
  close.addEventListener('click', closeNote);
  const field = (name, value, testid) => (value === null || value === undefined || value === '' ? null
    : [h('dt', {}, name), h('dd', { 'data-testid': testid || null }, value)]);
  const openBtn = (nid, text, testid) => {
    const b = h('button', { type: 'button', class: 'linklike', 'data-testid': testid, 'data-note-id': nid }, text);
    b.addEventListener('click', guard(() => openNote(nid)));
    return b;
  };
  const links = note.links || [];
  const linkItems = links.map((l) => {
    const outgoing = l.source_id === note.id;
    const other = outgoing ? l.target_id : l.source_id;
    const kind = String(l.kind).replace(/[^a-z]/g, '');
    return h('li', { 'data-testid': 'note-link', 'data-kind': l.kind },
      h('span', { class: `badge kind-${kind}` }, l.kind), ' ',
      h('span', { class: 'dir', 'aria-label': outgoing ? 'to' : 'from' }, outgoing ? '→' : '←'), ' ',
      neighbours.has(other) && neighbours.get(other) === null
        ? h('span', { class: 'muted' }, '(a note that no longer exists)')
        : openBtn(other, noteLabel(other, neighbours), 'note-link-open'),
      l.reason ? h('span', { class: 'reason' }, ` — ${l.reason}`) : null);
  });
  const shown = new Map([...neighbours]);
  const graphLinks = links.filter((l) => shown.has(l.source_id === note.id ? l.target_id : l.source_id));
  aside.append(
    h('div', { class: 'detail-head' }, h('h2', { id: 'note-detail-title' }, 'Note'), statusBadge(note.status), close),
    h('p', { class: 'detail-content', 'data-testid': 'note-detail-content' }, note.content),
    note.context ? h('p', { class: 'hint' }, note.context) : null,
    h('dl', { class: 'fields' },
      field('Validity', validity(note), 'note-detail-validity'),
      note.superseded_by ? [h('dt', {}, 'Superseded by'),
        h('dd', {}, openBtn(note.superseded_by, 'the newer note', 'note-detail-superseded-by'))] : null,
      field('Subject', note.subject),
      field('Slot', note.slot ? `${note.slot}${note.value ? ` = ${note.value}` : ''}` : null),
      field('Entities', note.entities.join(', ')),
      field('Keywords', note.keywords.join(', ')),
      field('Tags', note.tags.join(', ')),
      field('Importance', note.importance.toFixed(2)),
      field('Recalled', plural(note.recall_count, 'time')),
      field('Extractor', note.extractor),
      field('Created', note.created_at ? fmtTime(note.created_at) : null),
      field('Updated', note.updated_at ? fmtTime(note.updated_at) : null)),
    sourceButtons(note),
    h('h3', {}, `Links (${links.length})`),
    linkItems.length ? h('ul', { class: 'links', 'data-testid': 'note-links' }, linkItems)
      : h('p', { class: 'empty' }, 'No links.'),
    graphLinks.length ? h('figure', { class: 'graph-box' },
      neighbourhoodSvg(note, graphLinks, shown, (nid) => guard(() => openNote(nid))()),
      h('figcaption', { class: 'hint' },
        nOthers > shown.size ? `The first ${shown.size} of ${nOthers} linked notes. ` : null,
        'Left: notes that link to this one; right: notes it links to. Select a node to open it.')) : null,
    h('h3', {}, 'History'),
    h('ol', { class: 'history', 'data-testid': 'note-history' }, history.map((c) => h('li', {},
      timeEl(c.at), ' ', h('strong', {}, c.action),
      Object.keys(c.detail || {}).length
        ? h('span', { class: 'detail' }, ' ', Object.entries(c.detail).map(([k, v]) =>
          `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`).join('; '))
        : null))),
  );
  aside.setAttribute('aria-labelledby', 'note-detail-title');
  aside.hidden = false;
  aside.focus({ preventScroll: true });
  if (window.matchMedia('(max-width: 900px)').matches) aside.scrollIntoView({ block: 'start' });
}

// -- summary ---------------------------------------------------------------------------------
async function loadSummary() {
  const gen = state.gen;
  const sm = await call(userPath('/summary'));
  if (gen !== state.gen) return;
  state.summaryLoaded = true;
  const box = clear($('summary'));
  box.append(
    h('p', { class: 'hint' }, `${plural(sm.n_notes, 'current note')} · updated `, timeEl(sm.updated_at)),
    h('div', { class: 'summary-text', 'data-testid': 'summary-text' }, sm.text || '(empty)'),
  );
}

// -- search ------------------------------------------------------------------------------------
async function runSearch(ev) {
  ev.preventDefault();
  const gen = state.gen;
  const query = $('search-query').value.trim();
  if (!query) {
    $('search-status').textContent = 'Type something to search for.';
    $('search-query').focus();
    return;
  }
  const k = Math.min(200, Math.max(1, Number.parseInt($('search-k').value, 10) || 10));
  const body = { query, k, unit: $('search-unit').value };
  const asOf = $('search-as-of').value;
  if (asOf) body.as_of = asOf;
  $('search-status').textContent = 'Searching…';
  const t0 = performance.now();
  let res;
  try {
    res = await call(userPath('/search'), { method: 'POST', body });
  } catch (err) {
    $('search-status').textContent = '';
    throw err;
  }
  if (gen !== state.gen) return;
  const ms = Math.round(performance.now() - t0);
  const list = clear($('hits'));
  res.hits.forEach((hit, i) => list.append(hitItem(hit, i)));
  $('search-status').textContent = res.hits.length
    ? `${plural(res.hits.length, 'hit')} in ${ms} ms${asOf ? `, as of ${asOf}` : ''}.`
    : 'No hits.';
}

function hitItem(hit, i) {
  const sources = Object.entries(hit.sources || {}).sort((a, b) => a[1] - b[1]);
  const ctx = h('button', { type: 'button', class: 'small', 'data-testid': 'hit-context' }, 'Show in context');
  ctx.addEventListener('click', guard(() => showEpisode(hit.episode_id)));
  return h('li', {
    class: 'hit', 'data-testid': 'hit', 'data-episode-id': hit.episode_id, 'data-session-id': hit.session_id,
  },
    h('div', { class: 'hit-head' },
      h('span', { class: 'rank', 'aria-label': `rank ${i + 1}` }, `${i + 1}`),
      h('span', { class: 'score', 'data-testid': 'hit-score', title: String(hit.score) }, `score ${hit.score.toFixed(3)}`),
      timeEl(hit.event_time, { 'data-testid': 'hit-date' }),
      h('span', { class: 'speaker', 'data-testid': 'hit-speaker' }, hit.speaker),
      h('span', { class: 'muted' }, 'in ', h('code', { 'data-testid': 'hit-session' }, hit.session_id)),
      hit.unit !== 'turn' ? h('span', { class: 'badge' }, `${hit.unit} · ${plural(hit.episode_ids.length, 'turn')}`) : null,
      flagBadge(hit.flags)),
    h('p', { class: 'content', 'data-testid': 'hit-text' }, hit.text),
    h('div', { class: 'hit-foot' },
      h('span', { class: 'found', 'aria-hidden': 'true' }, 'found by'),
      h('ul', { class: 'chips', 'aria-label': 'Found by' },
        sources.map(([name, rank]) => h('li', { class: 'chip source', 'data-testid': 'hit-source', 'data-source': name },
          `${name} #${rank}`))),
      ctx));
}

// -- start -------------------------------------------------------------------------------------
function wire() {
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    guard(() => signIn($('key-input').value))();
  });
  $('sign-out').addEventListener('click', () => signOut('Signed out.'));
  $('banner-close').addEventListener('click', hideBanner);
  $('user-select').addEventListener('change', guard(() => selectUser($('user-select').value)));
  $('more-users').addEventListener('click', busy($('more-users'), () => loadUsers(false)));
  for (const t of TABS) {
    $(`tab-${t}`).addEventListener('click', guard(() => selectTab(t)));
    $(`tab-${t}`).addEventListener('keydown', onTabKey);
  }
  $('more-sessions').addEventListener('click', busy($('more-sessions'), () => loadSessions(false)));
  $('more-notes').addEventListener('click', busy($('more-notes'), () => loadNotes(false)));
  $('note-status').addEventListener('change', guard(() => { closeNote(); return loadNotes(true); }));
  $('search-form').addEventListener('submit', (ev) => guard(runSearch)(ev));
  $('erase-confirm').addEventListener('input', () => {
    $('erase-button').disabled = !state.user || $('erase-confirm').value !== state.user;
  });
  $('erase-form').addEventListener('submit', (ev) => guard(eraseUser)(ev));
  window.addEventListener('hashchange', () => {
    const key = takeFragmentKey();
    if (key) guard(() => signIn(key))();
  });
}

function start() {
  wire();
  const key = takeFragmentKey() || sessionStorage.getItem(KEY_STORE);
  if (key) {
    guard(() => signIn(key))();
  } else {
    showSignin();
    $('key-input').focus();
  }
}

start();

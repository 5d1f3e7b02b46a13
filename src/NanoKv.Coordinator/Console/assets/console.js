// nanokv console: plain JS, no dependencies. Talks to the same coordinator that served it.
'use strict';

const $ = (sel) => document.querySelector(sel);
const creds = {
  get secret() { return localStorage.getItem('nanokv.secret') || ''; },
  get key() { return localStorage.getItem('nanokv.key') || ''; },
  save(secret, key) { localStorage.setItem('nanokv.secret', secret); localStorage.setItem('nanokv.key', key); },
  clear() { localStorage.removeItem('nanokv.secret'); localStorage.removeItem('nanokv.key'); },
};

// The secret goes to /admin and /metrics; object calls carry the access key (or the secret, which the
// coordinator accepts as a read-write key when access keys are on).
function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (creds.secret) { h['X-NanoKv-Secret'] = creds.secret; }
  if (creds.key || creds.secret) { h['X-NanoKv-Key'] = creds.key || creds.secret; }
  return h;
}

class HttpError extends Error {
  constructor(status, body) { super((body && (body.detail || body.error)) || ('HTTP ' + status)); this.status = status; }
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const resp = await fetch(path, opts);
  if (resp.status === 401) { showLogin('Sign in: ' + ((await safeJson(resp)).detail || 'credentials required')); throw new HttpError(401, null); }
  if (!resp.ok) { throw new HttpError(resp.status, await safeJson(resp)); }
  const type = resp.headers.get('content-type') || '';
  return type.includes('json') ? resp.json() : resp.text();
}

async function safeJson(resp) { try { return await resp.json(); } catch { return {}; } }

// Keys travel percent-encoded exactly like object URLs: every byte outside [A-Za-z0-9-_.~] (and a leading '.').
function encodeKey(text) {
  const bytes = new TextEncoder().encode(text);
  let out = '';
  bytes.forEach((b, i) => {
    const c = String.fromCharCode(b);
    out += (/[A-Za-z0-9\-_~]/.test(c) || (c === '.' && i > 0)) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  });
  return out;
}

function displayKey(encoded) { try { return decodeURIComponent(encoded); } catch { return encoded; } }

function fmtBytes(n) {
  if (n == null) { return '–'; }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => {
    if (k === 'class') { e.className = v; } else if (k.startsWith('on')) { e.addEventListener(k.slice(2), v); } else { e.setAttribute(k, v); }
  });
  children.flat().forEach(c => e.append(c instanceof Node ? c : document.createTextNode(String(c))));
  return e;
}

function bar(fraction) {
  const inner = el('div');
  inner.style.width = Math.round(Math.max(0, Math.min(1, fraction)) * 100) + '%';
  return el('span', { class: 'bar' + (fraction > 0.9 ? ' high' : ''), title: Math.round(fraction * 100) + '% used' }, inner);
}

// ---------------------------------------------------------------- navigation and sign-in

let timer = null;
const pages = { overview: loadOverview, objects: () => listObjects(null), ops: loadJobs, metrics: sampleMetrics };
const refreshEvery = { overview: 2000, ops: 2000, metrics: 2000 };

function route() {
  const page = (location.hash || '#overview').slice(1);
  if (!pages[page]) { location.hash = '#overview'; return; }
  $('#login').hidden = true;
  document.querySelectorAll('.page').forEach(p => { p.hidden = p.id !== 'page-' + page; });
  document.querySelectorAll('nav a').forEach(a => a.classList.toggle('active', a.dataset.page === page));
  clearInterval(timer);
  pages[page]().catch(() => {});
  if (refreshEvery[page]) { timer = setInterval(() => pages[page]().catch(() => {}), refreshEvery[page]); }
}

function showLogin(message) {
  clearInterval(timer);
  document.querySelectorAll('.page').forEach(p => { p.hidden = true; });
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
}

$('#login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  creds.save($('#login-secret').value.trim(), $('#login-key').value.trim());
  route();
});
$('#signout').addEventListener('click', () => { creds.clear(); showLogin('Signed out.'); });
window.addEventListener('hashchange', route);

// ---------------------------------------------------------------- overview

async function loadOverview() {
  try {
    const [health, nodes] = await Promise.all([api('/healthz'), api('/admin/nodes')]);
    $('#stat-alive').textContent = health.alive_nodes;
    $('#stat-replicas').textContent = health.replicas;
    $('#stat-pending').textContent = health.pending;
    $('#stat-owed').textContent = health.owed_deletes;
    const rows = nodes.map(n => {
      const cap = n.capacity_bytes, free = n.free_bytes;
      const used = cap ? (cap - free) / cap : 0;
      return el('tr', { 'data-node': n.node_id },
        el('td', { class: 'mono' }, n.node_id),
        el('td', { class: 'mono' }, n.url),
        el('td', {}, el('span', { class: 'badge ' + n.status }, n.status)),
        el('td', {}, cap ? [bar(used), ' ', fmtBytes(cap)] : '–'),
        el('td', {}, fmtBytes(free)),
        el('td', {}, n.last_heartbeat_age_ms == null ? 'never' : (n.last_heartbeat_age_ms / 1000).toFixed(1) + ' s ago'));
    });
    $('#volumes tbody').replaceChildren(...rows);
    $('#overview-error').textContent = '';
  } catch (e) {
    if (e.status !== 401) { $('#overview-error').textContent = e.message; }
  }
}

// ---------------------------------------------------------------- object browser

let cursor = null;

async function listObjects(after) {
  const prefix = $('#prefix').value;
  const limit = $('#page-size').value || 50;
  let q = '/?list&limit=' + encodeURIComponent(limit);
  if (prefix) { q += '&prefix=' + encodeKey(prefix); }
  if (after) { q += '&after=' + after; }
  try {
    const page = await api(q);
    const rows = page.keys.map(o => el('tr', { 'data-key': o.key },
      el('td', { class: 'mono key' }, displayKey(o.key)),
      el('td', {}, fmtBytes(o.size)),
      el('td', { class: 'mono', title: o.etag }, o.etag.slice(0, 16) + '…'),
      el('td', { class: 'mono' }, o.replicas.join(', ')),
      el('td', { class: 'mono' }, o.version),
      el('td', {},
        el('button', { class: 'link download', onclick: () => download(o.key) }, 'Download'),
        el('button', { class: 'link delete', onclick: () => remove(o.key) }, 'Delete'))));
    $('#objects tbody').replaceChildren(...rows);
    cursor = page.next_after;
    $('#next-page').disabled = !cursor;
    $('#objects-count').textContent = page.keys.length + ' keys' + (cursor ? ', more follow' : '');
    $('#objects-error').textContent = '';
  } catch (e) {
    if (e.status !== 401) { $('#objects-error').textContent = e.message; }
  }
}

$('#list-form').addEventListener('submit', (ev) => { ev.preventDefault(); listObjects(null); });
$('#first-page').addEventListener('click', () => listObjects(null));
$('#next-page').addEventListener('click', () => listObjects(cursor));
$('#upload-file').addEventListener('change', () => {
  const f = $('#upload-file').files[0];
  if (f) { $('#upload-key').value = $('#prefix').value + f.name; }
});

// XMLHttpRequest rather than fetch: only it reports upload progress.
$('#upload-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const file = $('#upload-file').files[0];
  const key = $('#upload-key').value;
  if (!file || !key) { $('#upload-status').textContent = 'choose a file and a key'; return; }
  const xhr = new XMLHttpRequest();
  const progress = $('#upload-progress');
  progress.hidden = false;
  progress.value = 0;
  $('#upload-button').disabled = true;
  xhr.open('PUT', '/' + encodeKey(key));
  Object.entries(headers({ 'Content-Type': 'application/octet-stream' })).forEach(([k, v]) => xhr.setRequestHeader(k, v));
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) { progress.value = Math.round(e.loaded / e.total * 100); } };
  xhr.onloadend = () => {
    $('#upload-button').disabled = false;
    if (xhr.status === 201) {
      progress.value = 100;
      const r = JSON.parse(xhr.responseText);
      $('#upload-status').textContent = 'uploaded ' + displayKey(r.key) + ' (' + fmtBytes(r.size) + ')';
      listObjects(null);
    } else {
      let detail = 'upload failed (HTTP ' + xhr.status + ')';
      try { detail = JSON.parse(xhr.responseText).detail || detail; } catch { /* not JSON */ }
      $('#upload-status').textContent = detail;
    }
  };
  xhr.send(file);
});

// Through the coordinator (?proxy=1): the bytes are checked against the committed BLAKE3 on the way, and a
// redirect to a volume would be another origin.
async function download(encodedKey) {
  const name = displayKey(encodedKey).split('/').pop() || 'object';
  const url = '/' + encodedKey + '?proxy=1';
  if (!creds.key && !creds.secret) {
    const a = el('a', { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    return;
  }
  const resp = await fetch(url, { headers: headers() });
  if (!resp.ok) { $('#objects-error').textContent = 'download failed: HTTP ' + resp.status; return; }
  const blob = await resp.blob();
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function remove(encodedKey) {
  if (!confirm('Delete ' + displayKey(encodedKey) + '?')) { return; }
  try {
    await api('/' + encodedKey, { method: 'DELETE' });
    listObjects(null);
  } catch (e) {
    $('#objects-error').textContent = e.message;
  }
}

// ---------------------------------------------------------------- ops

let watched = null;

$('#ops-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const health = await api('/healthz');
    const body = { command: $('#ops-command').value, dry_run: $('#ops-dry-run').checked, deep: $('#ops-deep').checked, replicas: health.replicas };
    const job = await api('/admin/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    watched = job.id;
    showJob(job);
    loadJobs();
  } catch (e) {
    if (e.status !== 401) { $('#ops-error').textContent = e.message; }
  }
});

async function loadJobs() {
  try {
    const jobs = await api('/admin/jobs');
    $('#jobs tbody').replaceChildren(...jobs.map(j => el('tr', {},
      el('td', { class: 'mono' }, el('button', { class: 'link', onclick: () => { watched = j.id; showJob(j); } }, j.id)),
      el('td', {}, j.command),
      el('td', {}, el('span', { class: 'badge ' + j.state }, j.state)),
      el('td', {}, j.phase),
      el('td', {}, j.done + ' / ' + j.total))));
    if (watched) { showJob(await api('/admin/jobs/' + watched)); }
    $('#ops-error').textContent = '';
  } catch (e) {
    if (e.status !== 401) { $('#ops-error').textContent = e.message; }
  }
}

function showJob(j) {
  $('#job').hidden = false;
  $('#job-id').textContent = j.id;
  $('#job-command').textContent = j.command;
  $('#job-state').textContent = j.state;
  $('#job-state').className = 'badge ' + j.state;
  $('#job-phase').textContent = j.phase;
  $('#job-done').textContent = j.done;
  $('#job-total').textContent = j.total;
  $('#job-progress').max = Math.max(1, j.total);
  $('#job-progress').value = j.state === 'done' ? Math.max(1, j.total) : j.done;
  const report = $('#job-report');
  if (j.error) {
    report.replaceChildren(el('p', { class: 'error' }, 'failed: ' + j.error));
  } else if (j.report) {
    const r = j.report;
    report.replaceChildren(
      el('h2', {}, 'Report' + (r.dry_run ? ' (dry run)' : '') + ' — ' + r.duration_secs.toFixed(1) + ' s, ' + fmtBytes(r.bytes_moved) + ' moved'),
      el('table', { id: 'report-counts' }, el('tbody', {}, Object.entries(r.counts).map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', { class: 'mono' }, v))))),
      r.details.length ? el('pre', { class: 'mono' }, r.details.slice(0, 200).join('\n')) : el('p', {}, 'No problems listed.'));
  } else {
    report.replaceChildren();
  }
}

// ---------------------------------------------------------------- metrics charts

const history = { t: [], requests: [], errors: [], bytesIn: [], bytesOut: [], latency: [] };
let last = null;

// Sums the samples of one series whose labels pass the filter, from Prometheus text.
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') { continue; }
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) { continue; }
    const labels = {};
    (m[3] || '').replace(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g, (_, k, v) => { labels[k] = v; return ''; });
    out.push({ name: m[1], labels, value: parseFloat(m[4]) });
  }
  return out;
}

const sum = (samples, name, filter) => samples.filter(s => s.name === name && (!filter || filter(s.labels))).reduce((a, s) => a + s.value, 0);

async function sampleMetrics() {
  try {
    const samples = parseMetrics(await api('/metrics'));
    const now = {
      t: Date.now(),
      requests: sum(samples, 'nanokv_http_requests_total'),
      errors: sum(samples, 'nanokv_http_requests_total', l => +l.status >= 400),
      bytesIn: sum(samples, 'nanokv_http_request_bytes_total'),
      bytesOut: sum(samples, 'nanokv_http_response_bytes_total'),
      putSum: sum(samples, 'nanokv_http_request_duration_seconds_sum', l => l.method === 'PUT'),
      putCount: sum(samples, 'nanokv_http_request_duration_seconds_count', l => l.method === 'PUT'),
    };
    if (last) {
      const dt = (now.t - last.t) / 1000;
      push('requests', (now.requests - last.requests) / dt);
      push('errors', (now.errors - last.errors) / dt);
      push('bytesIn', (now.bytesIn - last.bytesIn) / dt);
      push('bytesOut', (now.bytesOut - last.bytesOut) / dt);
      const n = now.putCount - last.putCount;
      push('latency', n > 0 ? (now.putSum - last.putSum) / n * 1000 : 0);
      history.t.push(now.t);
      if (history.t.length > 90) { Object.values(history).forEach(a => a.shift()); }
    }
    last = now;
    draw('#chart-requests', [history.requests], ['#2f6fde']);
    draw('#chart-errors', [history.errors], ['#d64545']);
    draw('#chart-bytes', [history.bytesIn, history.bytesOut], ['#2f6fde', '#1f9d55'], fmtBytes);
    draw('#chart-latency', [history.latency], ['#d69e2e']);
    $('#metrics-error').textContent = '';
  } catch (e) {
    if (e.status !== 401) { $('#metrics-error').textContent = e.message; }
  }
}

function push(name, v) { history[name].push(Math.max(0, v)); }

function draw(sel, series, colors, fmt) {
  const c = $(sel), g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1e-9, ...series.flat());
  g.strokeStyle = '#dfe3ea';
  g.beginPath(); g.moveTo(40, c.height - 20); g.lineTo(c.width, c.height - 20); g.stroke();
  g.fillStyle = '#6b7384'; g.font = '11px sans-serif';
  g.fillText(fmt ? fmt(max) : max.toFixed(max < 10 ? 2 : 0), 2, 12);
  g.fillText('0', 2, c.height - 22);
  series.forEach((s, i) => {
    g.strokeStyle = colors[i]; g.lineWidth = 2; g.beginPath();
    s.forEach((v, x) => {
      const px = 40 + (c.width - 44) * (x / Math.max(1, 89));
      const py = (c.height - 20) - (c.height - 30) * (v / max);
      if (x === 0) { g.moveTo(px, py); } else { g.lineTo(px, py); }
    });
    g.stroke();
  });
}

route();

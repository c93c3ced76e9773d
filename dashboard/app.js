// The Sluice dashboard: a small single-page app over the JSON API, no dependencies. The secret
// key lives in sessionStorage (this tab only); every view re-polls its data every POLL_MS and
// shows how fresh it is, except forms (a view answering `false`), which are not redrawn under
// the user's hands.
"use strict";

const POLL_MS = 10000;
const KEY = "sluice.sk";
const $ = (sel, root = document) => root.querySelector(sel);
const main = $("#main");
let pollTimer = null;
let lastUpdate = null;
let range = { window: "7d" };
let started = false;
// Which view is on screen: each `show` starts a new one. An answer that arrives after its view
// was left is dropped (`Stale`), so a slow page never draws over the one that followed it.
let shown = 0;
class Stale extends Error {}

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (n) => (n ?? 0).toLocaleString("en-US");
const pct = (x) => `${(x * 100).toFixed(1)}%`;

async function api(method, path, body) {
  const view = shown;
  const resp = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401 && started) { signOut(); throw new Error("signed out: the key is not valid"); }
  const text = await resp.text();
  if (view !== shown) throw new Stale("left before its data came");
  const json = text ? JSON.parse(text) : {};
  if (!resp.ok) throw new Error(json.error?.message ?? `HTTP ${resp.status}`);
  return json;
}

function rangeQuery() {
  return range.window ? `window=${range.window}` : `from=${range.from}&to=${range.to}`;
}

function signOut() {
  sessionStorage.removeItem(KEY);
  location.hash = "";
  location.reload();
}

function tick() {
  if (!lastUpdate) return;
  const s = Math.round((Date.now() - lastUpdate) / 1000);
  $("#freshness").textContent = `updated ${s}s ago`;
}
setInterval(tick, 1000);

function show(render) {
  clearTimeout(pollTimer);
  const view = ++shown;
  const run = async () => {
    let again = true;
    try {
      again = (await render()) !== false;
      lastUpdate = Date.now();
      tick();
    } catch (e) {
      if (e instanceof Stale) return;
      main.insertAdjacentHTML("afterbegin", `<p class="error">${esc(e.message)}</p>`);
    }
    if (again && view === shown) pollTimer = setTimeout(run, POLL_MS);
  };
  run();
}

function rangePicker() {
  const on = (w) => (range.window === w ? "on" : "secondary");
  return `<div class="row range card">
    <button class="${on("7d")}" data-window="7d">7 days</button>
    <button class="${on("30d")}" data-window="30d">30 days</button>
    <span class="muted">or</span>
    <input type="date" id="from" value="${esc(range.from ?? "")}"> <input type="date" id="to" value="${esc(range.to ?? "")}">
    <button class="${range.window ? "secondary" : "on"}" id="apply">Apply</button>
  </div>`;
}

function wireRange(rerender) {
  main.querySelectorAll("[data-window]").forEach((b) => b.addEventListener("click", () => { range = { window: b.dataset.window }; rerender(); }));
  $("#apply")?.addEventListener("click", () => {
    const from = $("#from").value, to = $("#to").value;
    if (from && to) { range = { from, to }; rerender(); }
  });
}

function revenue(conversions) {
  const by = {};
  for (const c of conversions ?? []) if (c.currency) by[c.currency] = (by[c.currency] ?? 0) + c.sum_cents;
  const parts = Object.entries(by).map(([cur, cents]) => `${(cents / 100).toFixed(2)} ${cur}`);
  return parts.length ? parts.join(" · ") : "—";
}

function chart(rows) {
  const W = 800, H = 200, P = 28;
  const max = Math.max(1, ...rows.map((r) => Math.max(r.clicks, r.installs)));
  const x = (i) => P + (i * (W - 2 * P)) / Math.max(1, rows.length - 1);
  const y = (v) => H - P - (v * (H - 2 * P)) / max;
  const line = (key) => rows.map((r, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(r[key]).toFixed(1)}`).join(" ");
  const labels = rows.map((r, i) => (i % Math.ceil(rows.length / 8) === 0 ? `<text x="${x(i)}" y="${H - 6}" text-anchor="middle">${esc(r.date.slice(5))}</text>` : "")).join("");
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="clicks and installs per day">
    <text x="${P}" y="12">${fmt(max)}</text>
    <path class="clicks" d="${line("clicks")}"></path><path class="installs" d="${line("installs")}"></path>${labels}</svg>
    <div class="legend"><span class="c">■ clicks</span><span class="i">■ installs</span></div>`;
}

async function overview() {
  const [s, series] = await Promise.all([
    api("GET", `/v1/attribution/stats?${rangeQuery()}`),
    api("GET", `/v1/attribution/stats/timeseries?${rangeQuery()}`),
  ]);
  const rate = s.clicks ? s.installs / s.clicks : 0;
  main.innerHTML = `${rangePicker()}
  <div class="grid" id="metrics">
    <div class="metric"><div class="value" data-metric="clicks">${fmt(s.clicks)}</div><div class="label">clicks</div></div>
    <div class="metric"><div class="value" data-metric="unique_clicks">${fmt(s.unique_clicks)}</div><div class="label">unique clicks</div></div>
    <div class="metric"><div class="value" data-metric="installs">${fmt(s.installs)}</div><div class="label">installs (${fmt(s.attributed_installs)} attributed)</div></div>
    <div class="metric"><div class="value" data-metric="conversion_rate">${pct(rate)}</div><div class="label">installs / clicks</div></div>
    <div class="metric"><div class="value" data-metric="revenue">${esc(revenue(s.conversions))}</div><div class="label">revenue</div></div>
  </div>
  <div class="card"><h2>${esc(s.from)} – ${esc(s.to)}</h2>${chart(series.rows)}</div>
  <div class="card"><h2>Conversions</h2>${table(["type", "count", "sum_cents", "currency"], s.conversions.map((c) => ({ ...c, currency: c.currency ?? "" })), "conv")}</div>`;
  wireRange(() => show(overview));
}

// A sortable table: click a header to sort by it.
const sorts = {};
function table(cols, rows, id) {
  const sort = sorts[id] ?? { col: null, asc: false };
  const data = [...rows];
  if (sort.col) data.sort((a, b) => (a[sort.col] > b[sort.col] ? 1 : a[sort.col] < b[sort.col] ? -1 : 0) * (sort.asc ? 1 : -1));
  const num = (v) => typeof v === "number";
  return `<table data-table="${id}"><thead><tr>${cols.map((c) => `<th data-col="${c}" class="${sort.col === c ? `sorted ${sort.asc ? "asc" : ""}` : ""} ${num(rows[0]?.[c]) ? "num" : ""}">${esc(c.replace(/_/g, " "))}</th>`).join("")}</tr></thead>
  <tbody>${data.map((r) => `<tr>${cols.map((c) => `<td class="${num(r[c]) ? "num" : ""}">${num(r[c]) ? fmt(r[c]) : esc(r[c])}</td>`).join("")}</tr>`).join("") || `<tr><td colspan="${cols.length}" class="muted">nothing yet</td></tr>`}</tbody></table>`;
}
function wireSort(rerender) {
  main.querySelectorAll("table[data-table] th").forEach((th) => th.addEventListener("click", () => {
    const id = th.closest("table").dataset.table, col = th.dataset.col;
    const cur = sorts[id] ?? {};
    sorts[id] = { col, asc: cur.col === col ? !cur.asc : false };
    rerender();
  }));
}

function grouped(path, keys) {
  const render = async () => {
    const v = await api("GET", `${path}?${rangeQuery()}`);
    const rows = v.rows.map((r) => ({ ...r, revenue: revenue(r.conversions), conversions: r.conversions.reduce((n, c) => n + c.count, 0) }));
    main.innerHTML = `${rangePicker()}<div class="card">${table([...keys, "clicks", "unique_clicks", "installs", "organic_installs", "conversions", "revenue"], rows, path)}</div>`;
    wireRange(() => show(render));
    wireSort(() => show(render));
  };
  return render;
}

// Breakdowns: one dimension's table (countries with their flags, shares as bars), and the
// device, OS and browser panels.
const DIMENSIONS = ["country", "region", "city", "platform", "os", "browser", "device", "referrer_host", "variant", "link", "sub1"];
let dimension = "country";
const flag = (cc) => (/^[A-Z]{2}$/.test(cc) ? String.fromCodePoint(...[...cc].map((c) => 0x1f1a5 + c.charCodeAt(0))) : "");
function breakdownRows(rows) {
  const total = rows.reduce((n, r) => n + r.clicks, 0) || 1;
  return rows.map((r) => ({
    key: r.key || "(unknown)", clicks: r.clicks, unique_clicks: r.unique_clicks, installs: r.installs,
    attributed_installs: r.attributed_installs, conversions: r.conversions.reduce((n, c) => n + c.count, 0),
    revenue: revenue(r.conversions), share: r.clicks / total,
  }));
}
function shareTable(rows, id, label = (k) => esc(k)) {
  return `<table data-breakdown="${id}"><thead><tr><th>${esc(id)}</th><th class="num">clicks</th><th>share</th></tr></thead><tbody>
    ${rows.map((r) => `<tr><td>${label(r.key)}</td><td class="num">${fmt(r.clicks)}</td><td><span class="bar" style="width:${(r.share * 120).toFixed(0)}px"></span> ${pct(r.share)}</td></tr>`).join("") || '<tr><td colspan="3" class="muted">nothing yet</td></tr>'}</tbody></table>`;
}
async function breakdowns() {
  const ask = (by, limit) => api("GET", `/v1/attribution/stats/breakdown?by=${by}&limit=${limit}&${rangeQuery()}`);
  const [main_, device, os, browser] = await Promise.all([ask(dimension, 100), ask("device", 8), ask("os", 8), ask("browser", 8)]);
  const rows = breakdownRows(main_.rows);
  const key = dimension === "country" ? (k) => `${flag(k)} ${esc(k)}` : (k) => esc(k);
  main.innerHTML = `${rangePicker()}<div class="card"><div class="row tabs">${DIMENSIONS.map((d) => `<button class="${d === dimension ? "on" : "secondary"}" data-dim="${d}">${esc(d.replace(/_/g, " "))}</button>`).join("")}</div></div>
    <div class="card"><h2>By ${esc(dimension.replace(/_/g, " "))}</h2>${table(["key", "clicks", "unique_clicks", "installs", "attributed_installs", "conversions", "revenue"], rows, `breakdown-${dimension}`)}</div>
    ${dimension === "country" ? `<div class="card" id="world"><h2>World</h2>${shareTable(rows, "country", key)}</div>` : ""}
    <div class="panels">${[["device", device], ["os", os], ["browser", browser]].map(([d, v]) => `<div class="card" id="panel-${d}"><h2>${d === "os" ? "OS" : d[0].toUpperCase() + d.slice(1)}</h2>${shareTable(breakdownRows(v.rows), d)}</div>`).join("")}</div>`;
  main.querySelectorAll("[data-dim]").forEach((b) => b.addEventListener("click", () => { dimension = b.dataset.dim; show(breakdowns); }));
  wireRange(() => show(breakdowns));
  wireSort(() => show(breakdowns));
}

// One page of links at a time (a tenant may have millions); "Next page" follows the cursor.
async function links(cursor) {
  const page = await api("GET", `/v1/links?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
  const list = page.links;
  main.innerHTML = `<form class="card" id="new-link"><h2>New link</h2><div class="row">
      <input name="id" placeholder="code (optional)"><input name="destination" placeholder="https://… destination" required>
      <input name="campaign" placeholder="campaign"><input name="source" placeholder="source"><input name="medium" placeholder="medium">
      <button>Create</button></div><p class="error" id="link-error"></p></form>
    <div class="card"><table><thead><tr><th>code</th><th>destination</th><th>campaign</th><th>source / medium</th><th></th></tr></thead><tbody>
    ${list.map((l) => `<tr data-link="${esc(l.id)}"><td><a href="#/link/${encodeURIComponent(l.id)}">${esc(l.id)}</a>${l.paused ? ' <span class="muted">(paused)</span>' : ""}</td>
      <td><code>${esc(l.destination)}</code></td><td>${esc(l.campaign)}</td><td>${esc(l.source)} / ${esc(l.medium)}</td>
      <td class="row"><button class="secondary" data-pause="${l.paused ? "false" : "true"}">${l.paused ? "Resume" : "Pause"}</button><button class="danger" data-delete>Delete</button></td></tr>`).join("")}
    </tbody></table><p class="row">${cursor ? '<button class="secondary" id="first-links">First page</button>' : ""}${page.next_cursor ? '<button class="secondary" id="more-links">Next page</button>' : ""}</p></div>`;
  $("#more-links")?.addEventListener("click", () => show(() => links(page.next_cursor)));
  $("#first-links")?.addEventListener("click", () => show(links));
  $("#new-link").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = Object.fromEntries([...new FormData(ev.target)].filter(([, v]) => v));
    try { await api("POST", "/v1/links", body); show(links); } catch (e) { $("#link-error").textContent = e.message; }
  });
  main.querySelectorAll("tr[data-link]").forEach((tr) => {
    const id = tr.dataset.link;
    tr.querySelector("[data-pause]").addEventListener("click", async (ev) => { await api("PATCH", `/v1/links/${encodeURIComponent(id)}`, { paused: ev.target.dataset.pause === "true" }); show(links); });
    tr.querySelector("[data-delete]").addEventListener("click", async () => { if (confirm(`Delete ${id}? Its code is never reused.`)) { await api("DELETE", `/v1/links/${encodeURIComponent(id)}`); show(links); } });
  });
}

// A link's QR code as an object URL: an <img> cannot send the key, so it is fetched here.
async function qrImage(id, format) {
  const resp = await fetch(`/v1/links/${encodeURIComponent(id)}/qr?format=${format}&size=512`, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` },
  });
  if (!resp.ok) throw new Error(`QR code: HTTP ${resp.status}`);
  return URL.createObjectURL(await resp.blob());
}

function linkDetail(id) {
  // Once per visit to the page, not at every poll.
  const qr = Promise.all([qrImage(id, "svg"), qrImage(id, "png")]);
  const render = async () => {
    const [s, link, results, variants] = await Promise.all([
      api("GET", `/v1/links/${encodeURIComponent(id)}/stats?${rangeQuery()}`),
      api("GET", `/v1/links/${encodeURIComponent(id)}`),
      api("GET", "/v1/attribution/results?limit=1000"),
      api("GET", `/v1/attribution/stats/breakdown?by=variant&link=${encodeURIComponent(id)}&${rangeQuery()}`),
    ]);
    const split = (link.split ?? []).concat(...(link.rules ?? []).map((r) => r.split ?? []));
    const perVariant = variants.rows.filter((r) => r.key).map((r) => ({
      variant: r.key, weight: split.find((v) => v.id === r.key)?.weight ?? "", clicks: r.clicks, installs: r.installs,
      install_rate: r.clicks ? pct(r.installs / r.clicks) : "—", conversions: r.conversions.reduce((n, c) => n + c.count, 0), revenue: revenue(r.conversions),
    }));
    const recent = results.results.filter((r) => r.link_id === id).slice(0, 20);
    const [svg, png] = await qr;
    main.innerHTML = `${rangePicker()}<div class="card"><h1>${esc(id)}</h1><p><code>${esc(location.origin)}/${esc(id)}</code> → <code>${esc(link.destination)}</code></p>
      <div class="grid"><div class="metric"><div class="value" data-metric="click_count">${fmt(s.click_count)}</div><div class="label">clicks</div></div>
      <div class="metric"><div class="value" data-metric="install_count">${fmt(s.install_count)}</div><div class="label">installs</div></div>
      <div class="metric"><div class="value">${pct(s.conversion_rate)}</div><div class="label">installs / clicks</div></div>
      <div class="metric"><div class="value">${esc(revenue(s.conversions))}</div><div class="label">revenue</div></div></div></div>
      <div class="card" id="variants"><h2>Split variants</h2>${split.length || perVariant.length ? table(["variant", "weight", "clicks", "installs", "install_rate", "conversions", "revenue"], perVariant, "variants") : '<p class="muted">No split test on this link.</p>'}
      <p><a href="#/routing/${encodeURIComponent(id)}">Edit routing: rules, split, cap, expiry</a></p></div>
      <div class="card"><h2>Recent matched installs</h2>${table(["installed_at", "install_id", "match_type", "ctit_seconds", "country"], recent, "recent")}</div>
      <div class="card" id="qr"><h2>QR code</h2><img alt="QR code of ${esc(id)}" src="${svg}" width="192" height="192">
      <p><a download="${esc(id)}.png" href="${png}">Download PNG</a> <a download="${esc(id)}.svg" href="${svg}">Download SVG</a></p></div>`;
    wireRange(() => show(render));
  };
  return render;
}

// The routing editor: rules (conditions → a destination or a split), the link's own split,
// its click cap and expiry, and a preview the server evaluates against the unsaved draft.
const CONDITIONS = ["country", "region", "platform", "os", "device", "browser", "language", "ip_cidr", "hours_utc", "weekdays", "query"];
const list = (s) => s.split(",").map((v) => v.trim()).filter(Boolean);
// A condition's editor text and back: lists comma-separated; query as name=v1,v2.
function conditionText(name, value) {
  if (name === "query") return Object.entries(value).map(([k, v]) => `${k}=${v.join(",")}`).join(" ");
  return Array.isArray(value) ? value.join(", ") : String(value);
}
function conditionValue(name, text) {
  if (name === "query") {
    const [k, v = ""] = text.split("=");
    return { [k.trim()]: list(v) };
  }
  if (name === "hours_utc") { const l = list(text); return l.length === 1 ? l[0] : l; }
  return list(text);
}
function routingEditor(id) {
  let draft = null;
  const variantRows = (variants, at) => `${variants.map((v, i) => `<div class="row" data-variant="${at}:${i}">
      <input data-f="id" value="${esc(v.id)}" placeholder="variant id" style="max-width:8rem"><input data-f="destination" value="${esc(v.destination)}" placeholder="https://… destination">
      <input data-f="weight" type="number" min="0" value="${esc(v.weight)}" style="max-width:6rem"><button type="button" class="secondary" data-drop-variant="${at}:${i}">✕</button></div>`).join("")}
      <button type="button" class="secondary" data-add-variant="${at}">+ variant</button>`;
  const render = () => {
    main.innerHTML = `<form class="card editor" id="routing"><h1>Routing of ${esc(id)}</h1>
      <p class="muted">Rules are tried in order; the first whose conditions all hold takes the click. Values within a condition are alternatives.</p>
      ${draft.rules.map((r, i) => `<div class="rule" data-rule="${i}"><div class="row"><strong>Rule ${i + 1}</strong>
        <button type="button" class="secondary" data-up="${i}">↑</button><button type="button" class="danger" data-drop-rule="${i}">Remove</button></div>
        ${Object.entries(r.when).map(([name, value]) => `<div class="row" data-cond="${i}:${esc(name)}"><select data-f="name">${CONDITIONS.map((c) => `<option ${c === name ? "selected" : ""}>${c}</option>`).join("")}</select>
          <input data-f="values" value="${esc(conditionText(name, value))}" placeholder="US, CA"><button type="button" class="secondary" data-drop-cond="${i}:${esc(name)}">✕</button></div>`).join("")}
        <button type="button" class="secondary" data-add-cond="${i}">+ condition</button>
        <div class="row"><label><input type="radio" name="then-${i}" value="go" ${r.split ? "" : "checked"} style="width:auto"> destination</label>
          <label><input type="radio" name="then-${i}" value="split" ${r.split ? "checked" : ""} style="width:auto"> split test</label></div>
        ${r.split ? variantRows(r.split, i) : `<input data-f="destination" data-rule-dest="${i}" value="${esc(r.destination ?? "")}" placeholder="https://… destination">`}</div>`).join("")}
      <button type="button" class="secondary" id="add-rule">+ rule</button>
      <h2>Everyone else</h2><label><input type="checkbox" id="link-split" ${draft.split ? "checked" : ""} style="width:auto"> split test (else the link's destinations)</label>
      ${draft.split ? variantRows(draft.split, "link") : ""}
      <h2>Limits</h2><div class="row"><label>total clicks <input id="cap-total" type="number" min="1" value="${esc(draft.click_cap?.total ?? "")}"></label>
        <label>clicks a day <input id="cap-daily" type="number" min="1" value="${esc(draft.click_cap?.daily ?? "")}"></label>
        <label>expires at (UTC) <input id="expires" value="${esc(draft.expires_at ?? "")}" placeholder="2027-01-31T23:59:59Z"></label></div>
      <button id="save-routing">Save</button> <span class="error" id="routing-error"></span></form>
      <form class="card" id="preview"><h2>Preview</h2><div class="row">
        <input name="country" placeholder="country (DE)"><input name="region" placeholder="region (DE-BY)">
        <select name="platform"><option>other</option><option>ios</option><option>android</option></select>
        <select name="device"><option value="">device</option><option>mobile</option><option>tablet</option><option>desktop</option></select>
        <select name="os"><option value="">os</option>${["ios", "android", "windows", "macos", "linux", "chromeos", "other"].map((o) => `<option>${o}</option>`).join("")}</select>
        <input name="browser" placeholder="browser (Chrome)"><input name="language" placeholder="language (de)"><input name="ip" placeholder="IP address">
        <input name="query" placeholder="query (tier=gold)"><input name="at" placeholder="time, RFC 3339 (now)"><button>Preview</button></div>
        <p id="preview-answer"></p></form>`;
    wire();
  };
  // Reads the inputs back into the draft (before any change of structure, and to save).
  const read = () => {
    main.querySelectorAll("[data-rule]").forEach((el) => {
      const r = draft.rules[el.dataset.rule];
      const when = {};
      el.querySelectorAll("[data-cond]").forEach((c) => {
        const name = c.querySelector('[data-f="name"]').value;
        const value = conditionValue(name, c.querySelector('[data-f="values"]').value);
        when[name] = name === "query" ? { ...(when.query ?? {}), ...value } : value;
      });
      r.when = when;
      const dest = el.querySelector("[data-rule-dest]");
      if (dest) r.destination = dest.value;
    });
    main.querySelectorAll("[data-variant]").forEach((el) => {
      const [at, i] = el.dataset.variant.split(":");
      const v = (at === "link" ? draft.split : draft.rules[at].split)[i];
      v.id = el.querySelector('[data-f="id"]').value;
      v.destination = el.querySelector('[data-f="destination"]').value;
      v.weight = Number(el.querySelector('[data-f="weight"]').value);
    });
    const total = $("#cap-total").value, daily = $("#cap-daily").value;
    draft.click_cap = total || daily ? { ...(total ? { total: Number(total) } : {}), ...(daily ? { daily: Number(daily) } : {}) } : null;
    draft.expires_at = $("#expires").value.trim() || null;
  };
  const change = (f) => () => { read(); f(); render(); };
  const variants = (at) => (at === "link" ? draft.split : draft.rules[at].split);
  const newVariant = (list) => ({ id: `v${list.length + 1}`, destination: "https://", weight: 1 });
  const wire = () => {
    $("#add-rule").addEventListener("click", change(() => draft.rules.push({ when: { country: [] }, destination: "https://" })));
    main.querySelectorAll("[data-drop-rule]").forEach((b) => b.addEventListener("click", change(() => draft.rules.splice(b.dataset.dropRule, 1))));
    main.querySelectorAll("[data-up]").forEach((b) => b.addEventListener("click", change(() => {
      const i = Number(b.dataset.up);
      if (i > 0) [draft.rules[i - 1], draft.rules[i]] = [draft.rules[i], draft.rules[i - 1]];
    })));
    main.querySelectorAll("[data-add-cond]").forEach((b) => b.addEventListener("click", change(() => {
      const when = draft.rules[b.dataset.addCond].when;
      const name = CONDITIONS.find((c) => !(c in when));
      if (name) when[name] = name === "query" ? { "": [] } : [];
    })));
    main.querySelectorAll("[data-drop-cond]").forEach((b) => b.addEventListener("click", change(() => {
      const [i, name] = b.dataset.dropCond.split(":");
      delete draft.rules[i].when[name];
    })));
    main.querySelectorAll('input[type="radio"]').forEach((radio) => radio.addEventListener("change", change(() => {
      const r = draft.rules[radio.name.slice(5)];
      if (radio.value === "split") { r.split = [newVariant([]), newVariant([0])]; delete r.destination; } else { r.destination = "https://"; delete r.split; }
    })));
    main.querySelectorAll("[data-add-variant]").forEach((b) => b.addEventListener("click", change(() => { const l = variants(b.dataset.addVariant); l.push(newVariant(l)); })));
    main.querySelectorAll("[data-drop-variant]").forEach((b) => b.addEventListener("click", change(() => {
      const [at, i] = b.dataset.dropVariant.split(":");
      variants(at).splice(i, 1);
    })));
    $("#link-split").addEventListener("change", change(() => { draft.split = $("#link-split").checked ? [newVariant([]), newVariant([0])] : null; }));
    $("#routing").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      read();
      try {
        await api("PATCH", `/v1/links/${encodeURIComponent(id)}`, { rules: draft.rules, split: draft.split, click_cap: draft.click_cap, expires_at: draft.expires_at });
        $("#routing-error").textContent = "saved";
      } catch (e) { $("#routing-error").textContent = e.message; }
    });
    $("#preview").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      read();
      const visitor = Object.fromEntries([...new FormData(ev.target)].filter(([, v]) => v));
      try {
        const p = await api("POST", `/v1/links/${encodeURIComponent(id)}/preview`, { visitor, rules: draft.rules, split: draft.split });
        const who = [visitor.country && `from ${visitor.country}`, `on ${visitor.platform}`, visitor.device, visitor.language && `speaking ${visitor.language}`].filter(Boolean).join(" ");
        const via = p.rule === null ? (p.variant ? "the link's split" : "the link's own destination") : `rule ${p.rule + 1}`;
        $("#preview-answer").textContent = `A visitor ${who} goes through ${via}${p.variant ? `, variant ${p.variant}` : ""}, to ${p.destination}${p.gone ? " (but the link is paused or expired: 410 or its fallback)" : ""}`;
      } catch (e) { $("#preview-answer").textContent = e.message; }
    });
  };
  return async () => {
    const link = await api("GET", `/v1/links/${encodeURIComponent(id)}`);
    draft = { rules: link.rules ?? [], split: link.split ?? null, click_cap: link.click_cap ?? null, expires_at: link.expires_at ?? null };
    render();
    return false;
  };
}

async function webhookSources() {
  const { sources } = await api("GET", "/v1/sources");
  main.innerHTML = `<div class="card"><h2>Conversion sources</h2><p class="muted">POST conversions to a source's URL. It is a secret: shown once, when made; a new one retires the old.</p>
    ${table(["name", "source_type", "webhook_url_hint", "created_at"], sources, "sources")}
    <p>${sources.map((s) => `<button type="button" data-rotate="${esc(s.id)}">New URL for ${esc(s.name)}</button>`).join(" ")}</p>
    <p id="new-url"></p></div>`;
  main.querySelectorAll("[data-rotate]").forEach((button) => button.addEventListener("click", async () => {
    try {
      const source = await api("POST", `/v1/sources/${encodeURIComponent(button.dataset.rotate)}/rotate`);
      $("#new-url").innerHTML = `${esc(source.name)}: <code>${esc(source.webhook_url)}</code> — copy it now, it is not shown again`;
    } catch (e) { $("#new-url").textContent = e.message; }
  }));
  return false; // keep a freshly shown URL on screen
}

async function partners() {
  const { partners } = await api("GET", "/v1/partners");
  const logs = await Promise.all(partners.map((p) => api("GET", `/v1/partners/${encodeURIComponent(p.id)}/deliveries`)));
  main.innerHTML = partners.map((p, i) => `<div class="card"><h2>${esc(p.name)} <span class="muted">${esc(p.id)}${p.share_revenue ? " · revenue shared" : ""}</span></h2>
    ${table(["type", "template"], Object.entries(p.postbacks).map(([type, template]) => ({ type, template })), `pb-${p.id}`)}
    ${p.skan_ad_network_id ? `<p>Verified SKAdNetwork postbacks of <code>${esc(p.skan_ad_network_id)}</code> are forwarded to <code>${esc(p.skan_postback_url ?? "(no URL yet)")}</code>.</p>` : ""}
    <h2>Recent deliveries</h2>${table(["at", "status", "response_code", "attempt", "url"], logs[i].deliveries.slice(0, 10), `dl-${p.id}`)}</div>`).join("")
    || `<div class="card muted">No partners yet: POST /v1/partners.</div>`;
}

async function settings() {
  const c = await api("GET", "/v1/attribution/config");
  const fields = ["click_lookback_days", "fingerprint_window_minutes", "raw_retention_days", "report_webhook_url", "report_signature_header",
    "min_ctit_seconds", "max_ctit_hours", "max_clicks_per_visitor_hour"];
  main.innerHTML = `<form class="card narrow" id="config"><h1>Attribution settings</h1>
    ${fields.map((f) => `<label>${esc(f.replace(/_/g, " "))}<input name="${f}" value="${esc(c[f])}"></label>`).join("")}
    <label><input type="checkbox" name="fingerprint_enabled" ${c.fingerprint_enabled ? "checked" : ""} style="width:auto"> fingerprint matching</label>
    <label>fraud mode<select name="fraud_mode">${["off", "shadow", "flag", "reject"].map((m) => `<option ${m === c.fraud_mode ? "selected" : ""}>${m}</option>`).join("")}</select></label>
    <p>Report signing secret: <span id="report-secret">${c.report_signing_secret_set ? "set (shown once, when generated)" : "generated on the first save"}</span>
    <button type="button" id="rotate-secret">Rotate</button></p>
    <button>Save</button><p class="error" id="config-error"></p></form>`;
  $("#config").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const body = { fingerprint_enabled: f.fingerprint_enabled.checked, fraud_mode: f.fraud_mode.value };
    for (const k of fields) body[k] = /days|minutes|seconds|hours|hour$/.test(k) ? Number(f[k].value) : f[k].value;
    try { showSecret(await api("PATCH", "/v1/attribution/config", body)); $("#config-error").textContent = "saved"; } catch (e) { $("#config-error").textContent = e.message; }
  });
  $("#rotate-secret").addEventListener("click", async () => {
    try { showSecret(await api("PATCH", "/v1/attribution/config", { rotate_report_signing_secret: true })); } catch (e) { $("#config-error").textContent = e.message; }
  });
  return false; // don't redraw a form being edited
}

// Fraud: what the rules found (by verdict and reason, and per source), the CTIT histogram of a
// source, and the rejected installs with their receipts.
let ctitSource = "";
function histogram(buckets) {
  const max = Math.max(1, ...buckets.map((b) => b.installs));
  return `<div class="histogram" role="img" aria-label="installs by click-to-install time">${buckets.map((b) => `<div class="bucket" data-bucket="${esc(b.label)}" title="${esc(b.label)}: ${fmt(b.installs)}">
    <span class="count">${fmt(b.installs)}</span><span class="column" style="height:${Math.round((b.installs / max) * 120)}px"></span><span class="label">${esc(b.label)}</span></div>`).join("")}</div>`;
}
async function fraud() {
  const [s, bySource, rejected] = await Promise.all([
    api("GET", `/v1/attribution/stats?${rangeQuery()}`),
    api("GET", `/v1/attribution/stats/by-source?${rangeQuery()}`),
    api("GET", "/v1/attribution/results?status=rejected&limit=20"),
  ]);
  const sources = [...new Set(bySource.rows.map((r) => r.source))];
  const ctit = await api("GET", `/v1/attribution/stats/ctit?${rangeQuery()}${ctitSource ? `&source=${encodeURIComponent(ctitSource)}` : ""}`);
  const reasons = Object.entries(s.fraud_reasons ?? {}).flatMap(([verdict, by]) => Object.entries(by).map(([reason, installs]) => ({ verdict, reason, installs })));
  main.innerHTML = `${rangePicker()}
  <div class="grid"><div class="metric"><div class="value" data-metric="rejected_installs">${fmt(s.rejected_installs)}</div><div class="label">rejected installs</div></div>
    <div class="metric"><div class="value">${fmt(s.attributed_installs)}</div><div class="label">attributed installs</div></div></div>
  <div class="card" id="fraud-reasons"><h2>Findings by reason</h2>${table(["verdict", "reason", "installs"], reasons, "fraud-reasons")}
    <p class="muted">Shadow mode reports findings as <em>suspicious</em>: tune the thresholds in Settings before rejecting.</p></div>
  <div class="card"><h2>By source</h2>${table(["source", "medium", "installs", "attributed_installs", "rejected_installs"], bySource.rows, "fraud-sources")}</div>
  <div class="card" id="ctit"><h2>Click-to-install time</h2>
    <select id="ctit-source"><option value="">all sources</option>${sources.map((x) => `<option ${x === ctitSource ? "selected" : ""}>${esc(x)}</option>`).join("")}</select>
    ${histogram(ctit.buckets)}<p class="muted">${fmt(ctit.installs)} installs matched to a click. Injection shows in the first buckets, flooding as a tail past a day.</p></div>
  <div class="card" id="rejected"><h2>Rejected installs</h2><table><thead><tr><th>install</th><th>installed</th><th>source</th><th>reasons</th></tr></thead><tbody>
    ${rejected.results.map((r) => `<tr><td><a href="#/install/${encodeURIComponent(r.install_id)}">${esc(r.install_id)}</a></td><td>${esc(r.installed_at)}</td><td>${esc(r.source)}</td><td>${esc(r.fraud_reasons.join(", "))}</td></tr>`).join("") || '<tr><td colspan="4" class="muted">none</td></tr>'}</tbody></table></div>`;
  $("#ctit-source").addEventListener("change", (e) => { ctitSource = e.target.value; show(fraud); });
  wireRange(() => show(fraud));
  wireSort(() => show(fraud));
}

// SKAdNetwork and AdAttributionKit: verified postbacks by ad network and campaign (each
// conversion window's values), the apps postbacks name, and the campaign map, edited as lines.
const total = (rows, field) => rows.reduce((n, r) => n + r[field], 0);
const fineText = (fine) => Object.entries(fine).map(([v, n]) => `${v}×${n}`).join(" ");
async function skan() {
  const [s, { apps }, { campaigns }] = await Promise.all([
    api("GET", `/v1/skan/stats?${rangeQuery()}`), api("GET", "/v1/apps"), api("GET", "/v1/skan/campaigns"),
  ]);
  const rows = s.rows.map((r) => ({
    ad_network: r.ad_network, campaign: r.campaign ?? `(unmapped ${r.source_identifier})`, installs: r.installs,
    redownloads: r.redownloads, re_engagements: r.re_engagements, low: r.coarse.low, medium: r.coarse.medium, high: r.coarse.high,
    fine_values: fineText(r.fine), "window 2": r.by_sequence[1].postbacks, "window 3": r.by_sequence[2].postbacks,
  }));
  main.innerHTML = `${rangePicker()}
  <div class="grid" id="skan-metrics">${["installs", "redownloads", "re_engagements"].map((f) => `<div class="metric"><div class="value" data-metric="${f}">${fmt(total(s.rows, f))}</div><div class="label">${f.replace(/_/g, "-")}</div></div>`).join("")}</div>
  <div class="card" id="skan-rows"><h2>Verified postbacks by ad network and campaign</h2>${table(Object.keys(rows[0] ?? { ad_network: 0, campaign: 0, installs: 0 }), rows, "skan-rows")}
    <p class="muted">First postbacks count installs and carry the fine or coarse values shown; windows 2 and 3 are the later postbacks. Postbacks whose signature fails are stored, never counted.</p></div>
  <div class="card" id="skan-apps"><h2>Apps</h2>${table(["name", "app_store_id", "count_development_postbacks", "created_at"], apps.map((a) => ({ ...a, app_store_id: String(a.app_store_id) })), "skan-apps")}
    <form id="new-app" class="row"><input name="app_store_id" placeholder="App Store id" required><input name="name" placeholder="name" required><button>Register</button></form>
    <p class="muted">Apple devices send the developer copies to <code>${esc(location.origin)}/.well-known/skadnetwork/report-attribution/</code> and <code>…/appattribution/report-attribution/</code> once the app names this domain (NSAdvertisingAttributionReportEndpoint).</p><p class="error" id="app-error"></p></div>
  <form class="card" id="campaign-map"><h2>Campaign map</h2><p class="muted">One line each: ad network id, source identifier (2, 3 or 4 digits), campaign.</p>
    <textarea name="lines" rows="8">${esc(campaigns.map((c) => `${c.ad_network_id} ${c.source_identifier} ${c.campaign}`).join("\n"))}</textarea>
    <button>Save map</button><p class="error" id="map-error"></p></form>`;
  $("#new-app").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("POST", "/v1/apps", { app_store_id: ev.target.app_store_id.value.trim(), name: ev.target.name.value }); show(skan); } catch (e) { $("#app-error").textContent = e.message; }
  });
  $("#campaign-map").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const lines = ev.target.lines.value.split("\n").map((l) => l.trim()).filter(Boolean);
    const body = { campaigns: lines.map((l) => { const [ad_network_id, source_identifier, ...name] = l.split(/\s+/); return { ad_network_id, source_identifier, campaign: name.join(" ") }; }) };
    try { await api("PUT", "/v1/skan/campaigns", body); show(skan); } catch (e) { $("#map-error").textContent = e.message; }
  });
  wireRange(() => show(skan));
  wireSort(() => show(skan));
  return false; // don't redraw forms being edited
}

function receipt(id) {
  return async () => {
    const r = await api("GET", `/v1/attribution/installs/${encodeURIComponent(id)}`);
    main.innerHTML = `<div class="card" id="receipt"><h1>Install ${esc(r.install_id)}</h1>
      <p><span class="pill ${esc(r.status)}" data-status="${esc(r.status)}">${esc(r.status)}</span> ${esc(r.match_type)} · installed ${esc(r.installed_at)}</p>
      ${table(["field", "value"], [
        { field: "click", value: r.click_id ?? "—" }, { field: "link", value: r.link_id ?? "—" },
        { field: "click-to-install", value: r.ctit_seconds === undefined ? "—" : `${r.ctit_seconds} s` },
        { field: "other clicks that competed", value: String(r.competing_clicks) },
        { field: "fraud mode", value: r.fraud.mode }, { field: "verdict", value: r.fraud.verdict },
      ], "receipt")}
      <h2>Reasons</h2>${table(["code", "value"], r.fraud.reasons, "receipt-reasons")}</div>`;
    return false;
  };
}

// The API shows a report signing secret once, in the answer that generated or rotated it.
function showSecret(config) {
  if (config.report_signing_secret) {
    $("#report-secret").innerHTML = `<code>${esc(config.report_signing_secret)}</code> — copy it now, it is not shown again`;
  }
}

const routes = {
  overview,
  campaigns: grouped("/v1/attribution/stats/by-campaign", ["campaign"]),
  sources: grouped("/v1/attribution/stats/by-source", ["source", "medium"]),
  breakdowns,
  fraud,
  skan,
  links,
  "webhook-sources": webhookSources,
  partners,
  settings,
};

function navigate() {
  if (!sessionStorage.getItem(KEY)) return;
  const [, name, arg] = (location.hash || "#/overview").split("/");
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === `#/${name}`));
  if (name === "link" && arg) return show(linkDetail(decodeURIComponent(arg)));
  if (name === "routing" && arg) return show(routingEditor(decodeURIComponent(arg)));
  if (name === "install" && arg) return show(receipt(decodeURIComponent(arg)));
  show(routes[name] ?? overview);
}

function start() {
  started = true;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  $("#signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", navigate);
  navigate();
}

$("#signin")?.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = $("#key").value.trim();
  sessionStorage.setItem(KEY, key);
  try {
    await api("GET", "/v1/attribution/stats");
    start();
  } catch (e) {
    sessionStorage.removeItem(KEY);
    $("#signin-error").textContent = key.startsWith("sk_") ? "That key was not accepted." : "A secret key starts with sk_.";
  }
});

if (sessionStorage.getItem(KEY)) start();

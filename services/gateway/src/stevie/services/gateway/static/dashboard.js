/* Stevie dashboard: fills each card from /api/dashboard/card/<name> (plain DOM + inline SVG,
   no dependencies). A card is loaded when it scrolls into view and refreshed every 5 s while
   visible. data-state: loading | ok | empty (route answered, nothing yet) | unavailable
   (route not served by this gateway) | error. */
"use strict";
(function () {
  const REFRESH_MS = 5000;
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") {
      if (!Number.isFinite(v)) return String(v);
      const d = digits !== undefined ? digits : (Math.abs(v) >= 1000 ? 0 : Math.abs(v) >= 1 ? 3 : 5);
      return v.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: 0 });
    }
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "object") return JSON.stringify(v).slice(0, 80);
    return String(v);
  }
  const isScalar = (v) => v === null || ["string", "number", "boolean"].includes(typeof v);

  function kv(obj, keys) {
    const t = el("table", { class: "kv" });
    for (const k of keys || Object.keys(obj)) {
      if (!(k in obj)) continue;
      const v = obj[k];
      if (!isScalar(v) && !(keys && keys.includes(k))) continue;
      t.append(el("tr", {}, el("th", {}, k), el("td", {}, fmt(v))));
    }
    return t;
  }
  function table(rows, cols, limit) {
    rows = rows.slice(0, limit || 10);
    cols = cols || [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => isScalar(r[k]))))].slice(0, 7);
    return el("table", { class: "grid" },
      el("tr", {}, cols.map((c) => el("th", {}, c))),
      rows.map((r) => el("tr", {}, cols.map((c) => el("td", {}, fmt(r[c]))))));
  }
  function bars(entries, unit) {  // [[label, value]] → horizontal SVG bars
    const w = 300, h = 18 * entries.length + 4;
    const max = Math.max(1e-12, ...entries.map(([, v]) => Math.abs(v)));
    const s = svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", class: "bars" });
    entries.forEach(([label, v], i) => {
      const y = 2 + i * 18;
      const len = Math.abs(v) / max * (w - 170);
      s.append(Object.assign(svg("text", { x: 0, y: y + 12 }), { textContent: label }));
      s.append(svg("rect", { x: 110, y: y + 2, width: Math.max(len, 1), height: 12, class: v < 0 ? "neg" : "pos" }));
      s.append(Object.assign(svg("text", { x: 114 + len, y: y + 12 }), { textContent: fmt(v) + (unit || "") }));
    });
    return s;
  }
  function line(points, key) {  // SVG equity curve
    const w = 320, h = 120, pad = 4;
    const ys = points.map((p) => p[key]);
    const xs = points.map((p) => p.ts);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    const [y0, y1] = [Math.min(0, ...ys), Math.max(0, ...ys)];
    const sx = (x) => pad + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (w - 2 * pad);
    const sy = (y) => h - pad - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (h - 2 * pad);
    const s = svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", class: "line" });
    s.append(svg("line", { x1: pad, x2: w - pad, y1: sy(0), y2: sy(0), class: "zero" }));
    s.append(svg("polyline", { points: points.map((p) => `${sx(p.ts).toFixed(1)},${sy(p[key]).toFixed(1)}`).join(" ") }));
    return s;
  }

  // -- card renderers: (sources) → Node -------------------------------------------------
  const R = {
    router(src) {
      const snap = src[0].body, out = [];
      const c = snap.lastChoice;
      if (c) {
        out.push(el("p", { class: "big" }, c.policyId), kv(c, ["score", "propensity", "width", "explorationBonus"]));
        if (c.sampled) out.push(el("h3", {}, "sampled scores"), bars(Object.entries(c.sampled)));
      } else out.push(el("p", {}, "no choice yet"));
      out.push(kv(snap, ["decisions", "decisionsLastMin"]));
      if (snap.updates && Object.keys(snap.updates).length) out.push(el("h3", {}, "posterior updates"), bars(Object.entries(snap.updates)));
      const audits = src[1] && src[1].status === 200 && Array.isArray(src[1].body) ? src[1].body : [];
      if (audits.length) {
        const n = {};
        for (const a of audits) n[a.policy_id] = (n[a.policy_id] || 0) + 1;
        out.push(el("h3", {}, `choice shares (last ${audits.length})`),
          bars(Object.entries(n).map(([k, v]) => [k, 100 * v / audits.length]), "%"));
      }
      return out;
    },
    pbt(src) {  // the lineage, newest first: the best member of each generation, as a score line
      const rows = Array.isArray(src[0].body) ? src[0].body : [];
      if (!rows.length) return [el("p", {}, "no PBT run yet"),
        el("p", { class: "muted" }, "uv run stevie pbt --generations 3 trains a population and writes its lineage here")];
      const run = rows[0].runId, best = {};
      for (const r of rows) if (r.runId === run && r.score !== null && !(best[r.generation] && best[r.generation].score >= r.score)) best[r.generation] = r;
      const gens = Object.values(best).sort((a, b) => a.generation - b.generation);
      return [el("p", {}, `run ${run}: ${rows.filter((r) => r.runId === run).length} versions`),
        el("h3", {}, "best score per generation"), bars(gens.map((r) => [`gen ${r.generation} · m${r.member}`, r.score])),
        table(gens.map((r) => ({ generation: r.generation, member: r.member, score: r.score, exploited: r.exploited, params: JSON.stringify(r.params) })))];
    },
    risk(src) {
      const g = src[0].body, out = [];
      out.push(el("p", { class: g.killSwitch ? "big bad" : "big good" }, g.killSwitch ? "KILL SWITCH ON" : "kill switch off"));
      if (g.breaker) out.push(el("h3", {}, "drawdown breaker"), kv(g.breaker, Object.keys(g.breaker)));
      if (g.limits) out.push(el("h3", {}, "limits"), kv(g.limits, Object.keys(g.limits)));
      if (g.usage && Object.keys(g.usage).length) out.push(el("h3", {}, "usage (quote)"), kv(g.usage, Object.keys(g.usage)));
      if (g.blocked && Object.keys(g.blocked).length) out.push(el("h3", {}, "blocked"), kv(g.blocked, Object.keys(g.blocked)));
      const s = src[1];
      if (s && s.status === 200 && s.body) out.push(el("h3", {}, "last sizing"), kv(s.body, ["symbol", "signal", "target_size", "target_notional_quote", "sigma_forecast", "sigma_source", "w", "w_star"]));
      const f = src[2];
      if (f && f.status === 200 && f.body && typeof f.body === "object") {
        const flags = f.body.flags && typeof f.body.flags === "object" ? f.body.flags : f.body;
        const vals = {};
        for (const [k, v] of Object.entries(flags)) vals[k] = v && typeof v === "object" && "value" in v ? v.value : v;
        out.push(el("h3", {}, "flags"), kv(vals, Object.keys(vals)));
      }
      return out;
    },
    book(src) {
      const b = src[0].body;
      if (b.state !== "LIVE" || !b.bids.length) return [el("p", { class: "big bad" }, b.state), el("p", {}, `${b.venue} ${b.symbol}: levels withheld until the book is LIVE`)];
      const max = Math.max(...b.bids.map((l) => l[1]), ...b.asks.map((l) => l[1]));
      const row = (l, side) => el("tr", { class: side },
        el("td", {}, fmt(l[0], 2)), el("td", {}, fmt(l[1], 4)),
        el("td", { class: "bar" }, el("span", { style: `width:${(100 * l[1] / max).toFixed(1)}%` })));
      return [el("p", {}, `${b.venue} ${b.symbol} · ${b.state} · seq ${b.seq}`),
        el("table", { class: "ladder" }, el("tr", {}, el("th", {}, "price"), el("th", {}, "size"), el("th", {}, "")),
          [...b.asks].reverse().map((l) => row(l, "ask")), b.bids.map((l) => row(l, "bid")))];
    },
    pnl(src) {
      const out = [];
      const eq = src[0];
      if (eq.status === 200 && eq.body.points.length) {
        const p = eq.body.points, last = p[p.length - 1];
        out.push(el("p", { class: last.pnlQuote >= 0 ? "big good" : "big bad" }, `${fmt(last.pnlQuote, 4)} USDT`),
          line(p, "pnlQuote"), kv(last, ["fills", "feesQuote"]));
      } else out.push(el("p", {}, eq.status === 200 ? "no audited decisions yet" : `equity curve: ${eq.status || eq.text}`));
      const pos = src[1];
      if (pos && pos.status === 200 && Array.isArray(pos.body)) {
        const open = pos.body.filter((x) => x.size !== 0);
        out.push(el("h3", {}, "positions"), open.length ? table(open, ["venue", "symbol", "size", "avgPrice", "mark", "unrealizedQuote", "realizedQuote"]) : el("p", {}, "flat"));
      }
      return out;
    },
    venues(src) {
      const rows = src[0].body.map((v) => ({ venue: v.venue, symbol: v.symbol, state: v.state,
        "latency ms": v.latencyMs, "spread bps": v.spread_bps, ["depth ±" + v.topDepthBps + "bp"]: v.topDepth,
        "fee bps": v.feeBps, reliability: v.reliabilityScore, "rate left": v.rateRemaining }));
      return [table(rows, Object.keys(rows[0] || {}), 12)];
    },
    health(src) {
      const h = src[0].body;
      const svc = Object.entries(h.services || {});
      return [el("p", { class: h.status === "ok" ? "big good" : "big bad" }, h.status),
        el("ul", { class: "svc" }, svc.map(([n, s]) => el("li", { class: s.up ? "up" : "down", title: s.backend || "" }, n))),
        kv({ "db latency ms": h.db && h.db.latencyMs, "ws clients": h.ws && h.ws.clients,
          "decisions / min": h.router && h.router.decisionsLastMin, "blocked / min": h.exec && h.exec.blockedLastMin,
          "last OHLCV sync": h.lastOHLCVSync ? new Date(h.lastOHLCVSync).toISOString().slice(11, 19) : null })];
    },
  };
  function generic(src) {
    const b = src[0].body;
    if (Array.isArray(b)) return b.length ? [el("p", {}, `${b.length} entries`), table(b)] : [el("p", {}, "no entries yet")];
    if (b && typeof b === "object") {
      const out = [kv(b)];
      for (const [k, v] of Object.entries(b)) {
        if (Array.isArray(v) && v.length && typeof v[0] === "object") out.push(el("h3", {}, k), table(v));
        else if (v && typeof v === "object" && !Array.isArray(v)) {
          const vals = Object.values(v);
          if (vals.length && vals.every((x) => x && typeof x === "object" && !Array.isArray(x)))  // {key: {...}} → rows
            out.push(el("h3", {}, k), table(Object.entries(v).map(([key, x]) => ({ [k]: key, ...x }))));
          else if (vals.every(isScalar)) out.push(el("h3", {}, k), kv(v, Object.keys(v)));
          else out.push(el("h3", {}, k), el("pre", {}, JSON.stringify(v).slice(0, 400)));
        }
      }
      return out;
    }
    return [el("pre", {}, fmt(b))];
  }

  // -- loading ------------------------------------------------------------------------
  function setState(card, state, text) {
    card.dataset.state = state;
    card.querySelector(".status").textContent = text;
  }
  async function load(card) {
    if (card.dataset.busy) { card.dataset.again = "1"; return; }
    card.dataset.busy = "1";
    const name = card.dataset.card;
    let url = `/api/dashboard/card/${name}`;
    const pick = card.querySelector(".pick");
    if (pick) url += `?venue=${encodeURIComponent(pick.querySelector("[name=venue]").value)}&symbol=${encodeURIComponent(pick.querySelector("[name=symbol]").value)}`;
    const body = card.querySelector(".body");
    try {
      const r = await fetch(url, { headers: { Accept: "application/json" } });
      const feed = await r.json();
      const first = feed.sources[0];
      if (!feed.sources.some((s) => s.available)) {
        setState(card, "unavailable", "not available");
        body.replaceChildren(el("p", { class: "muted" }, `not available: ${feed.sources.map((s) => s.path).join(", ")} is not served by this gateway yet`));
      } else if (!first.available) {
        setState(card, "unavailable", "not available");
        body.replaceChildren(el("p", { class: "muted" }, `not available: ${first.path} is not served yet`));
      } else if (first.status !== 200) {
        const detail = first.body && first.body.detail ? first.body.detail : first.text;
        setState(card, first.status === 404 || first.status === 409 ? "empty" : "error", first.status ? `HTTP ${first.status}` : "no answer");
        body.replaceChildren(el("p", { class: "muted" }, `${first.status === 404 ? "no data yet" : "unavailable"}: ${detail || first.path}`));
      } else {
        body.replaceChildren(...[(R[name] || generic)(feed.sources)].flat());
        setState(card, "ok", new Date().toISOString().slice(11, 19));
      }
    } catch (e) {
      setState(card, "error", "error");
      body.replaceChildren(el("p", { class: "muted" }, `could not render: ${e.message}`));
    } finally {
      delete card.dataset.busy;
      if (card.dataset.again) { delete card.dataset.again; load(card); }
    }
  }

  const visible = new Set();
  const io = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (e.isIntersecting) { visible.add(e.target); if (e.target.dataset.state === "loading") load(e.target); }
      else visible.delete(e.target);
    }
  }, { rootMargin: "100px" });
  document.querySelectorAll(".card").forEach((c) => {
    io.observe(c);
    c.querySelectorAll("select").forEach((s) => s.addEventListener("change", () => load(c)));
  });
  setInterval(() => {
    if (document.hidden) return;
    document.getElementById("clock").textContent = new Date().toISOString().slice(11, 19) + " UTC";
    visible.forEach(load);
  }, REFRESH_MS);
})();

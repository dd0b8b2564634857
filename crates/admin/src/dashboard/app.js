// The Weir dashboard: polls the admin API every two seconds and draws what
// it says. Plain DOM and SVG, no framework, no request to any other origin.
// Every chart is an <svg data-chart="NAME" data-points="N">, N being the
// number of non-empty points (or bars) it drew, for tests to read.
"use strict";

(() => {
  const POLL_MS = 2000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f6fb4", "#d62728", "#2a9d3a", "#ef7f0e", "#8c5bbd", "#8c564b", "#d6529f", "#13a4b4", "#a5a41a", "#6f6f6f"];
  const $ = (id) => document.getElementById(id);

  // ---- small helpers ----------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");
  const clock = (ms) => {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };
  const hhmm = (ms) => {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  };

  function fmtMs(v) {
    if (v === null || v === undefined) return "–";
    if (v < 1) return `${v.toFixed(2)} ms`;
    if (v < 100) return `${v.toFixed(1)} ms`;
    if (v < 10000) return `${Math.round(v)} ms`;
    return `${(v / 1000).toFixed(1)} s`;
  }
  const fmtPct = (r) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(r > 0 && r < 0.1 ? 1 : 0)}%`);
  const fmtRate = (v) => (v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  const fmtCost = (c) => (c === null || c === undefined ? "–" : `$${c < 1 ? c.toFixed(4) : c.toFixed(2)}`);
  function fmtNum(v) {
    if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
    if (v >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
    if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
    return Number.isInteger(v) ? String(v) : v.toFixed(v < 1 ? 2 : 1);
  }

  const colors = new Map();
  function colorOf(name) {
    if (!colors.has(name)) colors.set(name, PALETTE[colors.size % PALETTE.length]);
    return colors.get(name);
  }

  // Requests no route matched are reported under "-".
  const routeName = (route) => (route === "-" ? "(no route)" : route);

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function badge(state) {
    return el("span", { class: `badge state-${state}` }, state);
  }

  function table(node, head, rows, empty) {
    const body = rows.length
      ? rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))
      : [el("tr", {}, el("td", { colspan: head.length, class: "empty" }, empty))];
    node.replaceChildren(el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), el("tbody", {}, body));
  }

  // ---- charts -------------------------------------------------------------

  const W = 560;
  const H = 190;
  const M = { left: 58, right: 12, top: 10, bottom: 24 };

  // A line chart over [from, to]. Each series: {name, color, dashed,
  // points: [{t, v}]} with t the start of a step of `step` ms. With
  // `zeroGaps`, steps without a point are drawn as 0 (a rate); otherwise
  // the line breaks there (a latency).
  function lineChart(container, name, series, { from, to, step, zeroGaps, format }) {
    const drawn = series.reduce((n, s) => n + s.points.length, 0);
    const root = svg("svg", {
      viewBox: `0 0 ${W} ${H}`,
      class: "chart",
      role: "img",
      "data-chart": name,
      "data-points": String(drawn),
      "data-series": String(series.length),
    });
    const x = (t) => M.left + ((t - from) / Math.max(1, to - from)) * (W - M.left - M.right);
    const top = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.v))));
    const y = (v) => H - M.bottom - (v / top) * (H - M.top - M.bottom);

    for (const f of [0, 0.5, 1]) {
      const v = top * f;
      root.append(svg("line", { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v), class: "grid" }));
      root.append(svg("text", { x: M.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, format(v)));
    }
    for (const f of [0, 0.5, 1]) {
      const t = from + f * (to - from);
      const anchor = f === 0 ? "start" : f === 1 ? "end" : "middle";
      root.append(svg("text", { x: x(t), y: H - 6, class: "axis", "text-anchor": anchor }, clock(t)));
    }
    if (!drawn) {
      root.append(svg("text", { x: W / 2, y: H / 2, class: "nodata", "text-anchor": "middle" }, "no traffic in this window"));
    }

    for (const s of series) {
      if (!s.points.length) continue;
      const runs = [];
      if (zeroGaps) {
        const byT = new Map(s.points.map((p) => [p.t, p.v]));
        const first = Math.floor(from / step) * step;
        const run = [];
        for (let t = first; t <= to; t += step) run.push({ t: Math.max(t, from), v: byT.get(t) || 0 });
        runs.push(run);
      } else {
        let run = [];
        for (const p of s.points) {
          if (run.length && p.t - run[run.length - 1].t > step) {
            runs.push(run);
            run = [];
          }
          run.push(p);
        }
        runs.push(run);
      }
      const group = svg("g", { "data-series": s.name });
      group.append(svg("title", {}, s.name));
      for (const run of runs) {
        if (run.length === 1) {
          group.append(svg("circle", { cx: x(run[0].t), cy: y(run[0].v), r: 2.5, fill: s.color }));
        } else {
          group.append(
            svg("polyline", {
              points: run.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" "),
              stroke: s.color,
              "stroke-dasharray": s.dashed ? "4 3" : "none",
              class: "line",
            }),
          );
        }
      }
      root.append(group);
    }
    container.replaceChildren(root);
  }

  // Horizontal bars, one per row {name, value, label}.
  function barChart(container, name, rows, format) {
    const rowH = 24;
    const height = Math.max(1, rows.length) * rowH + 8;
    const labelW = 120;
    const drawn = rows.filter((r) => r.value > 0).length;
    const root = svg("svg", {
      viewBox: `0 0 ${W} ${height}`,
      class: "chart bars",
      role: "img",
      "data-chart": name,
      "data-points": String(drawn),
    });
    const top = Math.max(0, ...rows.map((r) => r.value)) || 1;
    if (!rows.length) {
      root.append(svg("text", { x: W / 2, y: 20, class: "nodata", "text-anchor": "middle" }, "no plugin calls in this window"));
    }
    rows.forEach((r, i) => {
      const yTop = 4 + i * rowH;
      const width = ((W - labelW - 210) * r.value) / top;
      root.append(svg("text", { x: labelW - 8, y: yTop + 15, class: "axis", "text-anchor": "end" }, r.name));
      root.append(svg("rect", { x: labelW, y: yTop + 3, width: Math.max(1, width), height: rowH - 8, fill: colorOf(`plugin:${r.name}`) }));
      root.append(svg("text", { x: labelW + width + 6, y: yTop + 15, class: "axis" }, format(r)));
    });
    container.replaceChildren(root);
  }

  // ---- the sections ---------------------------------------------------------

  function drawTraffic(data) {
    const step = data.bucket_secs * 1000;
    const opts = { from: data.from_ms, to: data.now_ms, step };
    const routes = data.routes;
    $("legend").replaceChildren(
      ...routes.map((r) => el("span", { class: "key" }, el("i", { "data-color": colorOf(r.route) }), routeName(r.route))),
    );
    // Colours through a property, not inline style (the page's policy
    // allows no inline style attributes).
    for (const i of $("legend").querySelectorAll("i[data-color]")) i.style.setProperty("background", i.dataset.color);

    lineChart(
      $("chart-requests"),
      "requests",
      routes.map((r) => ({ name: routeName(r.route), color: colorOf(r.route), points: r.points.map((p) => ({ t: p.t, v: p.rps })) })),
      { ...opts, zeroGaps: true, format: fmtRate },
    );
    lineChart(
      $("chart-errors"),
      "errors",
      routes.map((r) => ({
        name: routeName(r.route),
        color: colorOf(r.route),
        points: r.points.map((p) => ({ t: p.t, v: p.errors / p.requests })),
      })),
      { ...opts, zeroGaps: true, format: fmtPct },
    );
    lineChart(
      $("chart-latency"),
      "latency",
      routes.flatMap((r) => [
        { name: `${routeName(r.route)} p99`, color: colorOf(r.route), points: r.points.filter((p) => p.p99_ms !== null).map((p) => ({ t: p.t, v: p.p99_ms })) },
        {
          name: `${routeName(r.route)} p50`,
          color: colorOf(r.route),
          dashed: true,
          points: r.points.filter((p) => p.p50_ms !== null).map((p) => ({ t: p.t, v: p.p50_ms })),
        },
      ]),
      { ...opts, zeroGaps: false, format: fmtMs },
    );
    table(
      $("route-table"),
      ["route", "req/s (1 min)", "errors (1 min)", "p50", "p99", `requests (${data.minutes} min)`, "errors"],
      routes.map((r) => [
        routeName(r.route),
        fmtRate(r.last_minute.rps),
        fmtPct(r.last_minute.error_rate),
        fmtMs(r.p50_ms),
        fmtMs(r.p99_ms),
        fmtNum(r.requests),
        fmtNum(r.errors),
      ]),
      "no requests in this window",
    );
    const t = data.totals.last_minute;
    $("summary").textContent = `last minute: ${fmtRate(t.rps)} req/s · ${fmtPct(t.error_rate)} errors · p50 ${fmtMs(t.p50_ms)} · p99 ${fmtMs(t.p99_ms)}`;
  }

  function drawPlugins(data, plugins) {
    const errors = plugins.filter((p) => p.last_error || p.state !== "loaded");
    $("plugin-errors").replaceChildren(
      ...errors.map((p) => {
        const what =
          p.state === "failed"
            ? "never loaded: its routes cannot serve"
            : p.state === "missing"
              ? "file missing: its routes answer 503"
              : "a new version was refused; the old version keeps serving";
        const when = p.last_error_at ? ` at ${clock(p.last_error_at * 1000)}` : "";
        return el(
          "div",
          { class: "plugin-error", "data-plugin-error": p.name },
          el("strong", {}, `⚠ plugin ${p.name}: ${what}${when}`),
          p.last_error ? el("pre", {}, p.last_error) : null,
        );
      }),
    );
    const calls = new Map(data.plugins.map((p) => [p.plugin, p]));
    barChart(
      $("chart-plugins"),
      "plugin-time",
      data.plugins.map((p) => ({ name: p.plugin, value: p.total_ms, calls: p.calls, mean: p.mean_ms })),
      (r) => `${fmtMs(r.value)} · ${fmtNum(r.calls)} calls · ${fmtMs(r.mean)} each`,
    );
    table(
      $("plugin-table"),
      ["plugin", "state", "version", "loaded", "routes", "grants", "calls", "faults"],
      plugins.map((p) => {
        const seen = calls.get(p.name);
        return [
          p.name,
          el("span", {}, badge(p.state), p.last_error ? [" ", badge("refused")] : null),
          el("code", { title: p.version || "" }, p.version ? p.version.slice(0, 12) : "–"),
          p.loaded_at ? clock(p.loaded_at * 1000) : "–",
          (p.routes || []).join(", ") || "–",
          grantList(p),
          seen ? fmtNum(seen.calls) : "0",
          seen ? fmtNum(seen.faults) : "0",
        ];
      }),
      "no plugins",
    );
  }

  // Each grant and where it came from; a manifest's grants stand out, since
  // a file dropped beside the plugin gave them, not the config.
  function grantList(p) {
    const grants = p.grants || [];
    if (!grants.length) return "–";
    return el(
      "ul",
      { class: "grants", "data-grants": p.name },
      grants.map((g) =>
        el(
          "li",
          { title: g.source === "manifest" ? `from ${p.manifest || "its manifest"}` : "from the config" },
          g.name ? `${g.grant} ${g.name} ` : `${g.grant} `,
          el("span", { class: `badge source-${g.source}` }, g.source),
        ),
      ),
    );
  }

  function drawTargets(data, routes) {
    const seen = new Map(data.targets.map((t) => [`${t.upstream} ${t.target}`, t]));
    const pools = new Map();
    const blocks = [];
    for (const r of routes) {
      if (r.upstream) {
        if (!pools.has(r.upstream)) pools.set(r.upstream, { route: r, routes: [] });
        pools.get(r.upstream).routes.push(r.name);
      }
    }
    for (const [upstream, { route, routes: names }] of pools) {
      const node = el("table");
      table(
        node,
        ["target", "circuit", "weight", "in flight", `attempts (${data.minutes} min)`, "failures"],
        (route.target_status || []).map((s) => {
          const bare = s.target.replace(/^[a-z]+:\/\//, "");
          const tally = seen.get(`${upstream} ${bare}`);
          return [s.target, badge(s.circuit), s.weight, s.in_flight, tally ? fmtNum(tally.attempts) : "0", tally ? fmtNum(tally.failures) : "0"];
        }),
        "no targets",
      );
      blocks.push(el("div", { class: "block", "data-upstream": upstream }, el("h3", {}, `upstream ${upstream}`, el("span", { class: "muted" }, ` — routes ${names.join(", ")}`)), node));
    }
    for (const r of routes) {
      if (!r.ai_targets) continue;
      const node = el("table");
      table(
        node,
        ["AI target", "model", "url", "circuit", "cooling", "shim"],
        r.ai_targets.map((t) => [
          t.name,
          t.alias ? `${t.alias} → ${t.model}` : t.model,
          t.url,
          badge(t.circuit),
          t.cooling_ms ? `${Math.ceil(t.cooling_ms / 1000)} s` : "–",
          t.shim_loaded ? t.shim : el("span", { class: "bad" }, `${t.shim} (not loaded)`),
        ]),
        "no targets",
      );
      blocks.push(el("div", { class: "block", "data-ai-route": r.name }, el("h3", {}, `AI route ${r.name}`), node));
    }
    for (const r of routes) {
      if (r.missing_plugins && r.missing_plugins.length) {
        blocks.push(el("div", { class: "plugin-error" }, `route ${r.name}: plugins missing: ${r.missing_plugins.join(", ")} (it answers 503)`));
      }
    }
    $("targets").replaceChildren(...(blocks.length ? blocks : [el("p", { class: "empty" }, "no routes")]));
  }

  function drawAi(data) {
    const ai = data.ai;
    const empty = !ai.calls;
    $("ai-empty").hidden = !empty;
    const opts = { from: Math.floor(data.from_ms / 60000) * 60000, to: data.now_ms, step: 60000, zeroGaps: true, format: fmtNum };
    const series = (rows, prefix) =>
      rows.map((r) => ({ name: r.name, color: colorOf(`${prefix}:${r.name}`), points: r.points.map((p) => ({ t: p.t, v: p.tokens })) }));
    lineChart($("chart-ai-models"), "ai-models", series(ai.models, "model"), opts);
    lineChart($("chart-ai-consumers"), "ai-consumers", series(ai.consumers, "consumer"), opts);
    const rows = [
      ...ai.models.map((m) => ["model", m.name, fmtNum(m.calls), fmtNum(m.prompt_tokens), fmtNum(m.completion_tokens), fmtCost(m.cost)]),
      ...ai.consumers.map((c) => ["consumer", c.name, fmtNum(c.calls), fmtNum(c.prompt_tokens), fmtNum(c.completion_tokens), fmtCost(c.cost)]),
    ];
    table($("ai-table"), ["by", "name", "calls", "prompt", "completion", "cost"], rows, "no AI traffic");
  }

  // The newest errors, a run of identical ones on one row with its count.
  const ERROR_ROWS = 15;
  function drawErrors(data) {
    const rows = [];
    for (const e of data.errors) {
      const key = `${e.route} ${e.method} ${e.path} ${e.status} ${e.error}`;
      const last = rows[rows.length - 1];
      if (last && last.key === key) {
        last.count += 1;
        last.oldest = e.time_ms;
      } else {
        rows.push({ key, e, count: 1, oldest: e.time_ms });
      }
    }
    const shown = rows.slice(0, ERROR_ROWS);
    const hidden = rows.slice(ERROR_ROWS).reduce((n, r) => n + r.count, 0);
    table(
      $("error-table"),
      ["time", "route", "request", "status", "error", "count"],
      shown.map(({ e, count, oldest }) => [
        count > 1 ? `${clock(oldest)} – ${clock(e.time_ms)}` : clock(e.time_ms),
        e.route || "(no route)",
        `${e.method} ${e.path}`,
        e.status,
        el("span", { class: "bad" }, e.error || "–"),
        count > 1 ? `×${count}` : "",
      ]),
      "no errors",
    );
    $("errors-more").textContent = hidden ? `and ${hidden} older (the last ${data.errors.length} errors are kept)` : "";
  }

  // ---- polling ----------------------------------------------------------------

  async function getJson(path) {
    const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) throw new Error("unauthorised");
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    return response.json();
  }

  function problem(text) {
    const node = $("problem");
    node.hidden = !text;
    node.textContent = text || "";
  }

  let refreshes = 0;
  async function refresh() {
    const minutes = $("minutes").value;
    let results;
    try {
      results = await Promise.all([
        getJson(`/dashboard/data?minutes=${encodeURIComponent(minutes)}`),
        getJson("/routes"),
        getJson("/plugins"),
        getJson("/healthz"),
      ]);
    } catch (e) {
      const health = $("health");
      health.textContent = "unreachable";
      health.className = "badge state-open";
      problem(
        e.message === "unauthorised"
          ? "Not authorised: open this page as /?token=TOKEN (the admin token) to sign in."
          : `The admin API cannot be reached (${e.message}); retrying.`,
      );
      return;
    }
    const [data, routes, plugins, health] = results;
    problem(null);
    $("health").textContent = health.status === "ok" ? "up" : String(health.status);
    $("health").className = `badge state-${health.status === "ok" ? "closed" : "open"}`;
    drawTraffic(data);
    drawPlugins(data, plugins.plugins);
    drawTargets(data, routes.routes);
    drawAi(data);
    drawErrors(data);
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    $("updated").textContent = `updated ${clock(data.now_ms)}`;
  }

  async function loop() {
    try {
      await refresh();
    } finally {
      setTimeout(loop, POLL_MS);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("minutes").addEventListener("change", () => refresh());
    loop();
  });
})();

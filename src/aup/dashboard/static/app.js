// Shared helpers of the Auptimizer dashboard pages (plain JavaScript, no build step).
"use strict";

const aup = {
  /** GET (or POST) a JSON API path; throws an Error with the server's message on failure. */
  async api(path, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    const res = await fetch(path, opts);
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      const detail = body && body.detail ? body.detail : res.statusText;
      const err = new Error(typeof detail === "string" ? detail : aup.validationText(detail));
      err.status = res.status;
      throw err;
    }
    return body;
  },

  /** A FastAPI 422 detail (a list of {loc, msg, input}) as one readable line. */
  validationText(detail) {
    if (!Array.isArray(detail)) return JSON.stringify(detail);
    return detail.map((d) => {
      const where = (d.loc || []).filter((x) => x !== "query" && x !== "path").join(".");
      return `${where ? where + ": " : ""}${d.msg}`;
    }).join("; ");
  },

  /** ``text`` cut to ``n`` characters with an ellipsis (chart legends: a long name squeezed
   * the plot to a sliver). */
  short(text, n) {
    const t = String(text);
    return t.length > n ? `${t.slice(0, n - 1)}\u2026` : t;
  },

  /** Create an element with text content (never HTML from data). */
  el(tag, text, attrs) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  },

  num(x) {
    if (x === null || x === undefined) return "-";
    if (typeof x !== "number") return String(x);
    if (Number.isInteger(x)) return String(x);
    return Number(x.toPrecision(6)).toString();
  },

  // A best score from a smaller budget than the largest one run (every job at the largest
  // budget failed, or none has finished yet), marked as `aup list` marks it.
  bestScore(score, e) {
    const text = aup.num(score);
    if (score === null || score === undefined || e.best_budget === null
        || e.best_budget === undefined || !(e.best_budget < e.largest_budget_run)) return text;
    return `${text} (budget ${aup.num(e.best_budget)} < ${aup.num(e.largest_budget_run)})`;
  },

  time(t) {
    if (t === null || t === undefined) return "-";
    const d = new Date(t * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
      `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  },

  duration(s) {
    if (s === null || s === undefined) return "-";
    if (s < 1) return `${Math.round(s * 1000)} ms`;  // "0.0 s" hid quick jobs' durations
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${(s / 60).toFixed(1)} min`;
    return `${(s / 3600).toFixed(2)} h`;
  },

  // A parameter value as experiment.json writes it, as `aup show` prints it: null, true, and
  // a string bare unless it reads as another JSON value ("1" quoted, apart from the number 1).
  value(v) {
    if (typeof v === "number") return aup.num(v);
    if (typeof v === "string") {
      try { JSON.parse(v); } catch (_) { return v; }
    }
    return JSON.stringify(v === undefined ? null : v);
  },

  params(p) {
    return Object.entries(p || {}).map(([k, v]) => `${k}=${aup.value(v)}`).join(", ");
  },

  statusCell(status, note) {
    return aup.el("td", status + (note ? ` (${note})` : ""), { class: `status-${status}` });
  },

  /** "stopping" after a stop request, "no heartbeat" when the process seems gone. */
  statusNote(e) {
    if (e.status !== "RUNNING") return "";
    if (e.stale) return "no heartbeat: resume it with aup resume";
    return e.stop_requested ? "stopping" : "";
  },

  showError(err) {
    const box = document.getElementById("error");
    if (box) box.textContent = err ? String(err.message || err) : "";
  },

  /** Call fn now and every `seconds`, skipping a round while the previous one runs. */
  poll(fn, seconds) {
    let busy = false;
    const tick = async () => {
      if (busy) return;
      busy = true;
      try { await fn(); aup.showError(null); } catch (e) { aup.showError(e); }
      finally { busy = false; }
    };
    tick();
    return setInterval(tick, seconds * 1000);
  },

  /** Show "first-last of total" (or `empty`) in #page-info and enable #prev/#next. */
  pager(offset, limit, total, empty) {
    const last = Math.min(offset + limit, total);
    document.getElementById("page-info").textContent =
      total ? `${offset + 1}-${last} of ${total}` : empty;
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled = last >= total;
  },

  plotConfig: { responsive: true, displaylogo: false },
};

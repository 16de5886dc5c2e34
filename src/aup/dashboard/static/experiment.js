// The experiment page: summary, stop button, charts, job table, job detail.
"use strict";

const eid = Number(window.location.pathname.split("/").filter(Boolean).pop());
const st = {
  offset: 0, limit: 50, sort: "jid", order: "asc", status: "", minScore: "", maxScore: "",
  labels: [], params: [], selectedJob: null, exp: null, curveJobs: [],
};
const COLUMNS = [
  ["jid", "job", true], ["status", "status", true], ["score", "score", true],
  ["budget", "budget", true], ["params", "parameters", false], ["extras", "results", false],
  ["n_attempts", "attempts", true], ["start_time", "started", true],
  ["duration", "duration", true], ["fail_reason", "failure", false],
];

function renderSummary(e) {
  document.title = `Auptimizer: ${e.name} (${e.eid})`;
  document.getElementById("title").textContent = `experiment ${e.eid}: ${e.name}`;
  const status = document.getElementById("exp-status");
  const note = aup.statusNote(e);
  status.textContent = e.status + (note ? ` (${note})` : "");
  status.className = `status-${e.status}`;
  const stop = document.getElementById("stop");
  stop.hidden = e.status !== "RUNNING";
  stop.disabled = e.stop_requested;
  const box = document.getElementById("summary-body");
  box.replaceChildren();
  const rows = [
    ["proposer", e.proposer], ["resource", e.resource], ["target", e.target],
    ["progress", `${e.n_done}/${e.n_total === null ? "?" : e.n_total}`],
    ["running", e.n_running], ["failed", e.n_failed], ["early stopped", e.n_early_stopped],
    ["started", aup.time(e.start_time)], ["ended", aup.time(e.end_time)],
  ];
  if (e.error_msg) rows.push(["error", e.error_msg]);
  for (const [k, v] of rows) box.appendChild(aup.el("div", `${k}: ${v === null ? "-" : v}`));
  const best = document.getElementById("best-body");
  best.replaceChildren();
  if (e.best_job) {
    best.appendChild(aup.el("div", `job ${e.best_job.jid}: score ${aup.bestScore(e.best_job.score, e)}`,
      { id: "best-score" }));
    for (const [k, v] of Object.entries(e.best_job.params)) {
      best.appendChild(aup.el("div", `${k} = ${aup.value(v)}`, { class: "best-param" }));
    }
  } else {
    best.textContent = "none yet";
  }
}

async function loadExperiment() {
  const e = await aup.api(`/api/experiments/${eid}`);
  st.exp = e;
  st.labels = e.labels;
  st.params = e.parameters.map((p) => p.name);
  renderSummary(e);
  return e;
}

async function loadHistory() {
  const h = await aup.api(`/api/experiments/${eid}/history`);
  // With budgets (hyperband, bohb) one trace per budget: scores after fewer epochs do not
  // compare with the others.
  const budgets = [...new Set(h.points.budget.filter((b) => b !== null))].sort((a, b) => a - b);
  const groups = budgets.length ? budgets : [null];
  const traces = groups.map((b) => {
    const keep = h.points.n.map((_, i) => i).filter((i) => b === null
      || h.points.budget[i] === b);
    return {
      x: keep.map((i) => h.points.n[i]), y: keep.map((i) => h.points.score[i]),
      customdata: keep.map((i) => h.points.jid[i]), mode: "markers",
      name: b !== null ? `score at budget ${aup.num(b)}`
        : h.step > 1 ? `score (min/max of ${h.step} jobs)` : "score",
      hovertemplate: "job %{customdata}: %{y}<extra></extra>", marker: { size: 5 } };
  });
  traces.push(
    { x: h.best.n, y: h.best.score, mode: "lines", line: { shape: "hv" }, name: "best so far" });
  Plotly.react("history-chart", traces, {
    // left-aligned: a centred title ran under Plotly's toolbar (top right) on narrow screens
    title: { text: `score per job (${h.n_finished} finished)`, x: 0.01, xanchor: "left" },
    xaxis: { title: { text: "finished job #" } }, yaxis: { title: { text: "score" } },
    margin: { t: 40 }, legend: { orientation: "h" } }, aup.plotConfig);
}

async function loadParallel() {
  const p = await aup.api(`/api/experiments/${eid}/parallel`);
  const dims = p.dimensions.map((d) => {
    const dim = { label: d.name, values: d.values };
    if (d.log) {  // parcoords has no log axis: draw log10 and label the powers of ten
      dim.values = d.values.map((v) => (v > 0 ? Math.log10(v) : null));
      const finite = dim.values.filter((v) => v !== null);
      const distinct = [...new Set(d.values.filter((v) => v > 0))].sort((a, b) => a - b);
      if (distinct.length <= 8) {  // few values (a budget's levels): label each of them
        dim.tickvals = distinct.map(Math.log10);
        dim.ticktext = distinct.map(aup.num);
      } else {
        const lo = Math.floor(Math.min(...finite)), hi = Math.ceil(Math.max(...finite));
        dim.tickvals = [];
        for (let k = lo; k <= hi && finite.length; k++) dim.tickvals.push(k);
        dim.ticktext = dim.tickvals.map((k) => `1e${k}`);
      }
      dim.label = `${d.name} (log)`;
    } else if (d.type === "choice") {
      dim.tickvals = d.choices.map((_, i) => i);
      dim.ticktext = d.choices;
    }
    return dim;
  });
  dims.push({ label: "score", values: p.score });
  // The best jobs bright (yellow) for both targets, as in `aup plot`'s images.
  const reverse = p.target === "min";
  Plotly.react("parallel-chart", [{
    type: "parcoords", dimensions: dims,
    line: { color: p.score, colorscale: "Viridis", reversescale: reverse, showscale: true,
            colorbar: { title: { text: "score" } } },
  }], { title: { text: `parameters vs score (${p.n_shown} of ${p.n_finished} jobs)`,
                  y: 0.98, font: { size: 14 } },
        margin: { t: 90, l: 60, r: 60 } }, aup.plotConfig);
}

async function loadCurves() {
  const qs = new URLSearchParams();
  for (const j of st.curveJobs) qs.append("jid", j);
  const c = await aup.api(`/api/experiments/${eid}/curves?${qs}`);
  const traces = c.jobs.filter((j) => j.num.length).map((j) => ({
    x: j.num, y: j.score, mode: "lines+markers",
    name: j.budget === null || j.budget === undefined ? `job ${j.jid}`
      : `job ${j.jid} (budget ${aup.num(j.budget)})`, marker: { size: 4 },
  }));
  const what = st.curveJobs.length ? "chosen jobs" : "best and running jobs";
  Plotly.react("curves-chart", traces, {
    title: { text: traces.length ? `intermediate results (${what})`
      : "intermediate results: none recorded (set track_intermediate_results)",
             x: 0.01, xanchor: "left" },
    xaxis: { title: { text: "result #" } }, yaxis: { title: { text: "score" } },
    showlegend: true, margin: { t: 40 } }, aup.plotConfig);
  document.getElementById("curves-reset").hidden = !st.curveJobs.length;
}

// The budget column only for hyperband and bohb, whose scores at different budgets do not
// compare.
const hasBudgets = () => Boolean(st.exp && st.exp.largest_budget_run !== null
  && st.exp.largest_budget_run !== undefined);

function renderHeader() {
  const tr = document.querySelector("#jobs thead tr");
  tr.replaceChildren();
  for (const [key, label, sortable] of COLUMNS) {
    if (key === "budget" && !hasBudgets()) continue;
    let text = label;
    if (key === "extras" && st.labels.length) text = st.labels.join(", ");
    const th = aup.el("th", text, { "data-key": key });
    if (sortable) {
      th.classList.add("sortable");
      if (st.sort === key) th.classList.add(st.order === "asc" ? "sorted-asc" : "sorted-desc");
      th.addEventListener("click", () => {
        if (st.sort === key) st.order = st.order === "asc" ? "desc" : "asc";
        else { st.sort = key; st.order = "asc"; }
        st.offset = 0;
        loadJobs().catch(aup.showError);
      });
    }
    tr.appendChild(th);
  }
}

async function loadJobs() {
  const qs = new URLSearchParams({ offset: st.offset, limit: st.limit, sort: st.sort, order: st.order });
  if (st.status) qs.set("status", st.status);
  if (st.minScore !== "") qs.set("min_score", st.minScore);
  if (st.maxScore !== "") qs.set("max_score", st.maxScore);
  const data = await aup.api(`/api/experiments/${eid}/jobs?${qs}`);
  st.labels = data.labels;
  renderHeader();
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  for (const j of data.items) {
    const tr = aup.el("tr", null, { "data-jid": j.jid, class: "clickable" });
    if (j.jid === st.selectedJob) tr.classList.add("selected");
    tr.appendChild(aup.el("td", j.jid));
    tr.appendChild(aup.statusCell(j.status));
    tr.appendChild(aup.el("td", aup.num(j.score), { class: "score" }));
    if (hasBudgets()) {
      tr.appendChild(aup.el("td", aup.num(j.budget), {
        class: "budget", title: j.bracket === null ? "" : `bracket ${j.bracket}, rung ${j.rung}` }));
    }
    tr.appendChild(aup.el("td", aup.params(j.params)));
    tr.appendChild(aup.el("td", Object.values(j.extras).map(aup.num).join(", ")));
    tr.appendChild(aup.el("td", j.n_attempts));
    tr.appendChild(aup.el("td", aup.time(j.start_time)));
    tr.appendChild(aup.el("td", aup.duration(j.duration)));
    const why = j.fail_reason ? `${j.fail_reason}${j.detail ? ": " + j.detail : ""}` : "";
    tr.appendChild(aup.el("td", why.length > 80 ? why.slice(0, 80) + "..." : why, { title: why }));
    tr.addEventListener("click", () => showJob(j.jid).catch(aup.showError));
    body.appendChild(tr);
  }
  aup.pager(st.offset, st.limit, data.total, "no jobs");
}

async function showJob(jid) {
  st.selectedJob = jid;
  for (const tr of document.querySelectorAll("#jobs tbody tr")) {
    tr.classList.toggle("selected", Number(tr.dataset.jid) === jid);
  }
  const [j, log] = await Promise.all([
    aup.api(`/api/experiments/${eid}/jobs/${jid}`),
    aup.api(`/api/experiments/${eid}/jobs/${jid}/log`).catch((e) => ({ text: `(${e.message})` })),
  ]);
  document.getElementById("job-detail").hidden = false;
  document.getElementById("job-title").textContent = `job ${j.jid}: ${j.status}`;
  const info = document.getElementById("job-info");
  info.replaceChildren();
  info.appendChild(aup.el("div", `score: ${aup.num(j.score)}`));
  info.appendChild(aup.el("div", `parameters: ${aup.params(j.params)}`));
  if (j.budget !== null) info.appendChild(aup.el("div", `budget: ${aup.num(j.budget)}`));
  if (j.fail_reason) info.appendChild(aup.el("div", `failure: ${j.fail_reason}`, { class: "error", id: "job-failure" }));
  const extras = document.querySelector("#job-extras tbody");
  extras.replaceChildren();
  for (const x of j.extras) {
    const tr = aup.el("tr");
    tr.appendChild(aup.el("td", x.label));
    tr.appendChild(aup.el("td", aup.num(x.value)));
    extras.appendChild(tr);
  }
  const att = document.querySelector("#job-attempts tbody");
  att.replaceChildren();
  for (const a of j.attempts) {
    const tr = aup.el("tr");
    tr.appendChild(aup.el("td", a.num));
    tr.appendChild(aup.statusCell(a.status));
    tr.appendChild(aup.el("td", a.exit_code === null ? "-" : a.exit_code));
    tr.appendChild(aup.el("td", a.fail_reason || ""));
    tr.appendChild(aup.el("td", a.detail || ""));
    tr.appendChild(aup.el("td", aup.time(a.start_time)));
    tr.appendChild(aup.el("td", aup.time(a.end_time)));
    att.appendChild(tr);
  }
  document.getElementById("job-log").textContent = log.text || "(empty)";
  if (!st.curveJobs.includes(jid)) {
    st.curveJobs = [jid, ...st.curveJobs].slice(0, 10);
    await loadCurves();
  }
}

async function refresh() {
  const e = await loadExperiment();
  const work = [loadHistory(), loadParallel(), loadCurves(), loadJobs()];
  if (st.selectedJob !== null) work.push(showJob(st.selectedJob));  // live log tail
  await Promise.all(work);
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  return e;
}

async function main() {
  if (!Number.isInteger(eid) || eid < 1) throw new Error("bad experiment id in the address");
  const settings = await aup.api("/api/settings");
  const sel = document.getElementById("job-status");
  for (const s of settings.job_statuses) sel.appendChild(aup.el("option", s, { value: s }));
  document.getElementById("apply").addEventListener("click", () => {
    // a number the browser cannot read (1e400, "1e-") reads as "": say so rather than
    // showing every job as if the filter applied
    const bad = ["min-score", "max-score"].filter((id) => document.getElementById(id).validity.badInput);
    if (bad.length) {
      aup.showError(new Error(`score ${bad.map((id) => id.split("-")[0] === "min" ? "from" : "to").join(" and ")}: not a number the browser can read; the filter was not applied`));
      return;
    }
    aup.showError(null);
    st.status = sel.value;
    st.minScore = document.getElementById("min-score").value;
    st.maxScore = document.getElementById("max-score").value;
    st.offset = 0;
    loadJobs().catch(aup.showError);
  });
  sel.addEventListener("change", () => document.getElementById("apply").click());
  document.getElementById("page-size").addEventListener("change", (ev) => {
    st.limit = Number(ev.target.value); st.offset = 0; loadJobs().catch(aup.showError); });
  document.getElementById("prev").addEventListener("click", () => {
    st.offset = Math.max(0, st.offset - st.limit); loadJobs().catch(aup.showError); });
  document.getElementById("next").addEventListener("click", () => {
    st.offset += st.limit; loadJobs().catch(aup.showError); });
  document.getElementById("curves-reset").addEventListener("click", () => {
    st.curveJobs = [];
    loadCurves().catch(aup.showError);
  });
  document.getElementById("stop").addEventListener("click", async () => {
    if (!window.confirm(`Stop experiment ${eid}? It stays resumable.`)) return;
    try {
      await aup.api(`/api/experiments/${eid}/stop`, {
        method: "POST", headers: { "X-Requested-With": "aup" } });
      document.getElementById("stop").disabled = true;
      await loadExperiment();
    } catch (e) { aup.showError(e); }
  });
  // A running experiment is refreshed in full; a STOPPED or FAILED one can be resumed
  // (aup resume), so its status alone is polled and the page follows a resume. A FINISHED
  // experiment does not change any more.
  const resumable = (status) => status === "RUNNING" || status === "STOPPED"
    || status === "FAILED";
  let timer = null;
  let shown = null;  // the status of the last full refresh
  const tick = async () => {
    if (shown === null || shown === "RUNNING") {
      shown = (await refresh()).status;
    } else if ((await aup.api(`/api/experiments/${eid}`)).status !== shown) {
      shown = (await refresh()).status;
    }
    if (!resumable(shown) && timer !== null) { clearInterval(timer); timer = null; }
  };
  await tick();
  if (resumable(shown)) {
    timer = setInterval(() => tick().catch(aup.showError), settings.refresh_seconds * 1000);
  }
}
main().catch((e) => {
  // no such experiment (or not an id): the message alone, not empty panels around it
  if (e.status === 404 || e.status === 422 || e.message.startsWith("bad experiment id")) {
    for (const box of document.querySelectorAll("main > :not(#error)")) box.style.display = "none";
  }
  aup.showError(e);
});

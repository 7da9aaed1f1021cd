// The run viewer: lists runs, follows one live over the SSE routes. No framework, no build.
//
// Two rules hold everywhere below:
// - every URL is relative to this page and checked to be on its origin before a request
//   carries the token (`request`), so the token never goes anywhere else;
// - everything shown comes from data and is written with textContent (`el`), never innerHTML:
//   step outputs, names and error messages are user data.

const API = "../api/v1/";
const TOKEN_KEY = "workflow-runs.token";
const TENANT_KEY = "workflow-runs.tenant";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const STATUSES = ["scheduled", "running", "waiting", "completed", "failed", "cancelled"];
const DEFAULT_RETRY_MS = 3000;
const MAX_RETRY_MS = 10000;

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ DOM, safely

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function statusBadge(status) {
  return el("span", {class: `status ${STATUSES.includes(status) ? status : ""}`}, status || "…");
}

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

function seconds(fromIso, toIso) {
  const ms = Date.parse(toIso) - Date.parse(fromIso);
  return Number.isFinite(ms) && ms >= 0 ? `${(ms / 1000).toFixed(2)} s` : "";
}

// A time as the reader's local clock shows it; the UTC instant the API sent on hover.
function timeEl(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return el("span", {}, iso || "");
  return el("time", {datetime: iso, title: `${date.toISOString().replace(".000Z", "Z")} (UTC)`},
    date.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "medium"}));
}

function notice(text) {
  const box = $("notice");
  box.textContent = text || "";
  box.hidden = !text;
}

// ------------------------------------------------------------------ talking to the API

function credentials() {
  return {token: sessionStorage.getItem(TOKEN_KEY) || "", tenant: sessionStorage.getItem(TENANT_KEY) || ""};
}

function authHeaders() {
  const {token, tenant} = credentials();
  if (token) return {"Authorization": `Bearer ${token}`};
  // Without a token: the internal listener (the private API's stand-in) trusts X-Tenant-Id;
  // the public one ignores it and answers 401.
  return tenant ? {"X-Tenant-Id": tenant} : {};
}

function apiUrl(path) {
  const url = new URL(API + path, document.baseURI);
  if (url.origin !== location.origin) throw new Error("refusing to send credentials to another origin");
  return url;
}

class ApiError extends Error {
  constructor(status, body) {
    const details = body && body.details;
    const text = Array.isArray(details) ? details.join("; ") : (details || "");
    super(`${status} ${(body && body.error) || "error"}${text ? ": " + text : ""}`);
    this.status = status;
    this.body = body;
  }
}

async function request(path, {method = "GET", json, form, headers = {}, signal} = {}) {
  const init = {method, headers: {...authHeaders(), ...headers}, signal, credentials: "same-origin",
                cache: "no-store", referrerPolicy: "no-referrer"};
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (form !== undefined) {
    init.body = form;
  }
  return fetch(apiUrl(path), init);
}

async function api(path, options) {
  const response = await request(path, options);
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) search.set(k, v);
  const text = search.toString();
  return text ? `?${text}` : "";
}

// ------------------------------------------------------------------ SSE over fetch

// Parses a text/event-stream body as the WHATWG spec does; calls onEvent for each dispatched
// event and onRetry for each `retry:` field. fetch (not EventSource) so Authorization is sent.
async function readEvents(response, onEvent, onRetry) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = {name: "", data: [], id: null};
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      const skip = buffer.startsWith("\r\n", newline) ? 2 : 1;
      if (buffer[newline] === "\r" && newline + 1 === buffer.length) break; // a \r\n may be split
      buffer = buffer.slice(newline + skip);
      if (line === "") {
        if (event.data.length) onEvent({name: event.name || "message", id: event.id, data: event.data.join("\n")});
        event = {name: "", data: [], id: null};
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event.name = text;
      else if (field === "data") event.data.push(text);
      else if (field === "id" && !text.includes("\0")) event.id = text;
      else if (field === "retry" && /^\d+$/.test(text)) onRetry(Number(text));
    }
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
});

// ------------------------------------------------------------------ one run, live

let current = null; // the run on screen: {id, abort, seen, lastId, ...}

class LiveRun {
  constructor({runId = null, execute = null}) {
    this.id = runId;
    this.execute = execute; // {workflowId, inputs}: start it through execute/stream first
    this.idempotencyKey = crypto.randomUUID();
    this.abort = new AbortController();
    this.seen = new Set();
    this.lastId = null;
    this.retryMs = DEFAULT_RETRY_MS;
    this.closed = false;
    this.reconnects = 0;
    this.duplicates = 0;
    this.run = null;        // the run as GET returns it (last read)
    this.workflow = null;   // its workflow definition (step names and types)
    this.steps = new Map(); // stepId → {li, ...parts}
    this.refreshTimer = null;
    this.refreshes = 0;     // reads of the run asked for: only the latest one's answer draws
  }

  stop() {
    this.abort.abort();
    clearTimeout(this.refreshTimer);
  }

  async follow() {
    const signal = this.abort.signal;
    if (this.execute) this.loadWorkflow(this.execute.workflowId); // its steps, as "not reached" rows
    while (!this.closed && !signal.aborted) {
      try {
        let response;
        if (this.execute && !this.id) {
          // The Idempotency-Key makes a repeated POST (after a drop before the first event)
          // return the run already started rather than start another.
          response = await request("workflow-runs/execute/stream", {
            method: "POST", json: this.execute, signal, headers: {"Idempotency-Key": this.idempotencyKey}});
        } else {
          const headers = this.lastId ? {"Last-Event-ID": this.lastId} : {};
          response = await request(`workflow-runs/${encodeURIComponent(this.id)}/events`, {headers, signal});
        }
        if (response.status === 204) { // nothing after our last event: the run has ended
          this.closed = true;
          await this.refresh();
          break;
        }
        if (!response.ok) {
          let body = null;
          try { body = await response.json(); } catch { body = null; }
          const error = new ApiError(response.status, body);
          if (response.status !== 429 && response.status < 500) { // no point in asking again
            streamState(`stream refused: ${error.message}`);
            notice(error.message);
            return;
          }
          const retryAfter = response.headers.get("Retry-After"); // a tenant's stream cap, a busy store
          if (retryAfter && /^\d+$/.test(retryAfter)) this.retryMs = Number(retryAfter) * 1000;
          throw error;
        }
        streamState(this.reconnects ? `live (resumed ${this.reconnects}×)` : "live");
        await readEvents(response, (event) => this.onEvent(event), (ms) => { this.retryMs = ms; });
      } catch (error) {
        if (signal.aborted) return;
        streamState(`connection lost (${error.message || error}); resuming…`);
      }
      if (this.closed || signal.aborted) break;
      // The stream ended without its closing event: resume after the last event seen.
      this.reconnects += 1;
      $("run-panel").dataset.reconnects = String(this.reconnects);
      streamState(`connection lost; resuming after ${this.lastId || "the start"}…`);
      await sleep(Math.min(this.retryMs, MAX_RETRY_MS), signal);
    }
    if (this.closed) streamState("ended");
  }

  onEvent(event) {
    if (this.abort.signal.aborted || event.name === "ping") return;
    if (event.id) {
      if (this.seen.has(event.id)) { // ids are opaque: only equality is relied on
        this.duplicates += 1; // never shown twice
        $("run-panel").dataset.duplicates = String(this.duplicates);
        return;
      }
      this.seen.add(event.id);
      this.lastId = event.id;
    }
    let data;
    try { data = JSON.parse(event.data); } catch { data = {content: event.data}; }
    logEvent(event, data);
    const content = data && data.content;
    switch (event.name) {
      case "workflow-run":
        if (!this.id && content && content.workflowRunId) this.adopt(content.workflowRunId);
        if (content && content.status) {
          setRunStatus(content.status);
          runChanged(this.id, content.status); // the lists and counts follow from this stream, not by polling
        }
        this.scheduleRefresh();
        break;
      case "activity-run":
        if (content) this.updateStep(content.stepId, {status: content.status, attempt: content.attempt});
        // a waiting approval's event carries its prompt: ask the person at once, before any GET
        if (content && content.status === "waiting" && typeof content.outputs?.prompt === "string") {
          this.showPrompt(content.stepId, content.outputs.prompt);
        }
        this.scheduleRefresh();
        break;
      case "thinking":
        if (data && data.stepId) this.step(data.stepId).thinking.append(document.createTextNode(String(content ?? "")));
        if (data && data.stepId) this.step(data.stepId).thinking.hidden = false;
        break;
      case "result":
        this.closed = true;
        runChanged(this.id, "completed");
        if (data.workflowRun) this.render(data.workflowRun);
        closing("result", "Completed", data.workflowRun ? finalOutputs(data.workflowRun) : null);
        break;
      case "error": {
        this.closed = true;
        const details = data.details;
        const where = details && typeof details === "object" && details.stepId ? ` (step ${details.stepId})` : "";
        const status = details && typeof details === "object" && details.status ? details.status : "error";
        if (TERMINAL.has(status)) runChanged(this.id, status);
        closing("error", `${status[0].toUpperCase()}${status.slice(1)}${where}: ${data.error}`, null);
        this.scheduleRefresh(0);
        break;
      }
      default:
        break;
    }
  }

  adopt(runId) {
    this.id = runId;
    runChanged(runId, null); // a run just started: the lists and counts have changed
    $("run-id").textContent = runId;
    history.replaceState(null, "", `#run=${encodeURIComponent(runId)}`);
  }

  scheduleRefresh(delay = 150) {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh().catch((e) => notice(e.message)), delay);
  }

  async refresh() {
    if (!this.id || this.abort.signal.aborted) return;
    // Answers can come back out of order: an older read drawn last would take a waiting
    // approval's buttons away (it saw the run before it waited).
    const asked = ++this.refreshes;
    const body = await api(`workflow-runs/${encodeURIComponent(this.id)}`, {signal: this.abort.signal});
    if (!this.abort.signal.aborted && asked === this.refreshes) this.render(body.workflowRun);
  }

  async loadWorkflow(workflowId) {
    if (this.workflow || !workflowId) return;
    try {
      const body = await api(`workflows/${encodeURIComponent(workflowId)}`, {signal: this.abort.signal});
      this.workflow = body.workflow;
    } catch {
      return; // a run outlives edits of its workflow; the timeline works without it
    }
    // One row per step, in the workflow's order (rows made from events before this read
    // are moved into place and named)
    for (const definition of this.workflow.steps || []) {
      const step = this.step(definition.id);
      if (definition.name && step.name.textContent === definition.id) step.name.textContent = definition.name;
      step.type.textContent = definition.type || "";
      $("timeline").append(step.li);
    }
    if (this.run) this.render(this.run);
  }

  stepType(stepId) {
    const step = (this.workflow?.steps || []).find((s) => s.id === stepId);
    return step ? step.type : "";
  }

  step(stepId) {
    let step = this.steps.get(stepId);
    if (step) return step;
    const definition = (this.workflow?.steps || []).find((s) => s.id === stepId);
    const parts = {
      name: el("span", {class: "step-name"}, definition?.name || stepId),
      id: el("code", {}, stepId),
      type: el("span", {class: "muted"}, definition?.type || ""),
      status: statusBadge(null),
      attempt: el("span", {class: "attempt muted"}),
      duration: el("span", {class: "duration muted"}),
      flags: el("span", {class: "muted"}),
      outputs: el("pre", {class: "outputs"}),
      thinking: el("pre", {class: "thinking", hidden: true}),
      actions: el("span", {class: "step-actions"}),
      decision: el("div", {class: "decision", hidden: true}),
    };
    parts.outputsBox = el("details", {class: "outputs-box", hidden: true}, el("summary", {}, "outputs"), parts.outputs);
    parts.li = el("li", {dataset: {step: stepId}},
      el("div", {class: "step-head"}, parts.name, parts.id, parts.type, parts.status, parts.attempt,
         parts.duration, parts.flags, parts.actions),
      parts.decision, parts.thinking, parts.outputsBox);
    step = parts;
    this.steps.set(stepId, step);
    $("timeline").append(step.li);
    return step;
  }

  updateStep(stepId, {status, attempt}) {
    if (!stepId) return;
    const step = this.step(stepId);
    if (status) {
      step.status.replaceWith(step.status = statusBadge(status));
      step.li.className = status;
    }
    if (attempt) step.attempt.textContent = `attempt ${attempt}`;
  }

  render(run) {
    // A read that left before the run ended may come back after its closing event: an ended
    // run is never shown as going again.
    if (this.run && TERMINAL.has(this.run.status) && !TERMINAL.has(run.status)) return;
    this.run = run;
    if (!this.id) this.adopt(run.id);
    if (!this.workflow && run.workflowId) this.loadWorkflow(run.workflowId);
    setRunStatus(run.status);
    const meta = [];
    if (TERMINAL.has(run.status)) meta.push(`took ${seconds(run.createdAt, run.updatedAt)}`);
    if (run.orchestration) meta.push(run.orchestration);
    if (run.inputs && run.inputs.length) meta.push(`inputs ${JSON.stringify(Object.fromEntries(run.inputs.map((i) => [i.name, i.value])))}`);
    $("run-meta").replaceChildren(`${run.workflowName || ""} (${run.workflowId}) · created `, timeEl(run.createdAt),
      meta.length ? ` · ${meta.join(" · ")}` : "",
      run.retryOf ? el("span", {}, " · retry of ", runLink(run.retryOf)) : "",
      run.retriedBy ? el("span", {}, " · retried by ", runLink(run.retriedBy)) : "");
    for (const activity of run.activityRuns || []) {
      this.updateStep(activity.stepId, {status: activity.status, attempt: activity.attempt});
      const step = this.step(activity.stepId);
      if (activity.stepName) step.name.textContent = activity.stepName;
      step.duration.textContent = TERMINAL.has(activity.status) ? seconds(activity.createdAt, activity.updatedAt) : "";
      step.flags.textContent = activity.reused ? "reused" : "";
      if (activity.outputs !== undefined && activity.outputs !== null) {
        step.outputs.textContent = pretty(activity.outputs);
        step.outputsBox.hidden = false;
      }
      const awaitsDecision = activity.status === "waiting" && run.status === "waiting" && this.stepType(activity.stepId) === "approval";
      if (awaitsDecision) this.showPrompt(activity.stepId, activity.outputs?.prompt);
      else step.decision.hidden = true;
      if (!awaitsDecision) step.actions.replaceChildren();
      if (awaitsDecision && !step.actions.firstChild) { // kept across refreshes: a comment being typed stays
        const comment = el("input", {class: "comment", placeholder: "comment (optional)", maxlength: 2000});
        const decide = (decision) => this.decide(activity.stepId, decision, comment.value.trim());
        step.actions.append(comment,
          el("button", {type: "button", class: "approve", onclick: () => decide("approve")}, "Approve"),
          el("button", {type: "button", class: "reject", onclick: () => decide("reject")}, "Reject"));
      }
    }
    if (run.error && !$("closing").textContent) {
      closing("error", `${run.status}${run.error.stepId ? ` (step ${run.error.stepId})` : ""}: ${run.error.message}`, null);
    }
    $("cancel-run").hidden = TERMINAL.has(run.status);
    $("retry-run").hidden = run.status !== "failed" || Boolean(run.retriedBy);
  }

  // An approval waiting for a person: its prompt in plain sight, and how to answer it.
  showPrompt(stepId, prompt) {
    const step = this.step(stepId);
    const cli = `workflow-runs approve ${this.id || "<runId>"} ${stepId}   (or: workflow-runs reject …)`;
    step.decision.replaceChildren(
      el("strong", {}, "Waiting for a decision: "), el("span", {class: "prompt"}, prompt ?? "(no prompt)"),
      el("div", {class: "muted"}, "Approve or Reject here (a comment is optional), or from a terminal: ",
         el("code", {}, cli)));
    step.decision.hidden = false;
  }

  async decide(stepId, decision, comment) {
    try {
      const body = await api(`workflow-runs/${encodeURIComponent(this.id)}/steps/${encodeURIComponent(stepId)}/${decision}`,
        {method: "POST", json: comment ? {comment} : {}});
      this.render(body.workflowRun);
      notice("");
    } catch (error) {
      notice(error.message);
    }
  }
}

function runLink(runId) {
  return el("a", {href: `#run=${encodeURIComponent(runId)}`}, runId);
}

function finalOutputs(run) {
  const outputs = {};
  for (const activity of run.activityRuns || []) outputs[activity.stepId] = activity.outputs;
  return outputs;
}

function setRunStatus(status) {
  $("run-status").replaceWith(Object.assign(statusBadge(status), {id: "run-status"}));
  $("run-panel").dataset.status = status || "";
}

function streamState(text) {
  $("stream-state").textContent = text;
}

function closing(kind, text, outputs) {
  const box = $("closing");
  box.className = kind;
  box.replaceChildren(el("strong", {}, text));
  if (outputs) box.append(el("details", {}, el("summary", {}, "final outputs"), el("pre", {}, pretty(outputs))));
  box.hidden = false;
}

function logEvent(event, data) {
  const log = $("event-log");
  const summary = data && data.content && typeof data.content === "object" ? (data.content.stepId || "") + " " + (data.content.status || "") : "";
  log.append(el("li", {dataset: {id: event.id || "", name: event.name}}, `${event.id || "-"}  ${event.name}  ${summary}`));
  $("event-count").textContent = String(log.children.length);
}

function showRun(live) {
  if (current) current.stop();
  current = live;
  notice("");
  const panel = $("run-panel");
  panel.hidden = false;
  delete panel.dataset.reconnects;
  delete panel.dataset.duplicates;
  $("run-id").textContent = live.id || "(starting)";
  setRunStatus(null);
  $("run-meta").textContent = "";
  $("timeline").replaceChildren();
  $("event-log").replaceChildren();
  $("event-count").textContent = "0";
  const box = $("closing");
  box.hidden = true;
  box.replaceChildren();
  $("cancel-run").hidden = true;
  $("retry-run").hidden = true;
  streamState("connecting…");
  live.follow().catch((error) => streamState(`stopped: ${error.message}`));
  panel.scrollIntoView({block: "start"});
}

function openRun(runId) {
  showRun(new LiveRun({runId}));
}

// ------------------------------------------------------------------ lists

let nextToken = null;
const pageTokens = {1: null}; // page number → the nextToken that reads it (this filter set)
let pageNumber = 1; // the page of the runs list on screen (1 = the first)
let listedWith = null; // the filters the list on screen was read with

function filters() {
  return {workflowId: $("f-workflow").value.trim(), status: $("f-status").value,
          search: $("f-search").value.trim(), limit: $("f-limit").value};
}

let listSeq = 0;
let workflowsSeq = 0;

async function listRuns(token = null, page = 1) {
  if (!hasCredentials()) return;
  const seq = ++listSeq; // only the latest request draws: answers may come back out of order
  // A nextToken is bound to the filters that made its first page: later pages reuse them.
  if (!token || !listedWith) listedWith = filters();
  try {
    const body = await api(`workflow-runs${query({...listedWith, nextToken: token})}`);
    if (seq !== listSeq) return;
    pageNumber = page;
    pageTokens[page] = token;
    const rows = body.data.map((run) => el("tr", {dataset: {run: run.id}},
      el("td", {}, el("a", {href: `#run=${encodeURIComponent(run.id)}`, class: "mono"}, run.id.slice(0, 8))),
      el("td", {}, run.workflowName || run.workflowId),
      el("td", {}, statusBadge(run.status)),
      el("td", {class: "muted"}, timeEl(run.createdAt))));
    $("runs").tBodies[0].replaceChildren(...rows);
    nextToken = body.pagination.nextToken || null;
    $("next-page").disabled = !nextToken;
    const size = Number(listedWith.limit) || body.data.length || 1;
    const pages = Math.max(1, Math.ceil(body.pagination.total / size));
    $("page-info").textContent = `page ${page} of ${pages} · ${body.pagination.total} run(s)`;
    $("runs-panel").dataset.page = String(page);
    notice("");
  } catch (error) {
    if (seq === listSeq) notice(error.message);
  }
}

async function listWorkflows() {
  if (!hasCredentials()) return;
  const seq = ++workflowsSeq;
  try {
    const body = await api("workflows?limit=100");
    const rows = await Promise.all(body.data.map(async (workflow) => {
      const counts = el("div", {class: "counts"});
      try {
        const dash = await api(`workflow-runs/dashboard/${encodeURIComponent(workflow.id)}`);
        counts.append(el("span", {}, `total ${dash.total}`),
          ...STATUSES.filter((s) => dash.counts[s]).map((s) => el("span", {class: `status ${s}`}, `${s} ${dash.counts[s]}`)));
      } catch (error) {
        counts.append(error.message);
      }
      return el("tr", {dataset: {workflow: workflow.id}},
        el("td", {}, el("div", {}, workflow.name), el("code", {class: "muted"}, workflow.id)),
        el("td", {}, counts),
        el("td", {},
          el("button", {type: "button", class: "small", onclick: () => { $("f-workflow").value = workflow.id; listRuns(); }}, "Runs"),
          " ",
          el("button", {type: "button", class: "small run-workflow", onclick: () => openExecute(workflow)}, "Run…")));
    }));
    if (seq !== workflowsSeq) return;
    $("workflows").tBodies[0].replaceChildren(...rows);
  } catch (error) {
    notice(error.message);
  }
}

let executing = null;

function openExecute(workflow) {
  executing = workflow;
  $("execute-name").textContent = workflow.name;
  const defaults = {};
  for (const input of workflow.inputs || []) defaults[input.name] = input.default ?? (input.type === "string" ? "" : null);
  $("execute-inputs").value = JSON.stringify(defaults, null, 1);
  $("execute").hidden = false;
}

// ------------------------------------------------------------------ wiring

function hasCredentials() {
  const {token, tenant} = credentials();
  return Boolean(token || tenant);
}

function showAuthState() {
  const {token, tenant} = credentials();
  $("auth-state").textContent = token ? "token set (this tab only)" : tenant ? `tenant ${tenant} (internal listener)`
    : "paste the token `make dev` printed, then Use";
  $("welcome").hidden = Boolean(token || tenant);
}

// The followed run changed (its stream said so): its row in the runs list shows the new
// status at once; the list and the per-workflow counts are read again a moment later (one
// read for a burst of changes). Nothing polls: only the stream already open drives this.
function runChanged(runId, status) {
  if (runId && status) {
    const row = $("runs").querySelector(`tr[data-run="${CSS.escape(runId)}"] .status`);
    if (row) row.replaceWith(statusBadge(status));
  }
  refreshListsSoon();
}

let listsTimer = null;

function refreshListsSoon(delay = 300) {
  clearTimeout(listsTimer);
  listsTimer = setTimeout(refreshAll, delay);
}

function refreshAll() {
  listWorkflows();
  listRuns(pageTokens[pageNumber] ?? null, pageNumber); // stay on the page being read
}

function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  const runId = params.get("run");
  if (runId && hasCredentials() && (!current || current.id !== runId)) openRun(runId);
}

function start() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("tenant")) sessionStorage.setItem(TENANT_KEY, params.get("tenant"));
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("tenant").value = sessionStorage.getItem(TENANT_KEY) || "";
  showAuthState();
  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim().replace(/^Bearer\s+/i, "");
    const tenant = $("tenant").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    if (tenant) sessionStorage.setItem(TENANT_KEY, tenant); else sessionStorage.removeItem(TENANT_KEY);
    showAuthState();
    refreshAll();
    route();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(TENANT_KEY);
    $("token").value = "";
    $("tenant").value = "";
    $("workflows").tBodies[0].replaceChildren();
    $("runs").tBodies[0].replaceChildren();
    $("page-info").textContent = "";
    showAuthState();
  });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); listRuns(); });
  $("first-page").addEventListener("click", () => listRuns());
  $("next-page").addEventListener("click", () => nextToken && listRuns(nextToken, pageNumber + 1));
  $("refresh-workflows").addEventListener("click", listWorkflows);
  $("execute-close").addEventListener("click", () => { $("execute").hidden = true; });
  $("execute").addEventListener("submit", (e) => {
    e.preventDefault();
    let inputs;
    try { inputs = JSON.parse($("execute-inputs").value || "{}"); } catch (error) { notice(`inputs: ${error.message}`); return; }
    showRun(new LiveRun({execute: {workflowId: executing.id, inputs}}));
  });
  $("cancel-run").addEventListener("click", async () => {
    if (!current?.id) return;
    try {
      const body = await api("workflow-runs/cancel", {method: "POST", json: {runIds: [current.id], reason: "cancelled from the viewer"}});
      const result = body.results[0];
      notice(result.status === "cancelled" ? "" : `cancel: ${result.status}${result.message ? " — " + result.message : ""}`);
    } catch (error) {
      notice(error.message);
    }
  });
  $("retry-run").addEventListener("click", async () => {
    if (!current?.id) return;
    try {
      const body = await api(`workflow-runs/${encodeURIComponent(current.id)}/retry`, {method: "POST", headers: {"Idempotency-Key": crypto.randomUUID()}});
      history.pushState(null, "", `#run=${encodeURIComponent(body.workflowRun.id)}`);
      openRun(body.workflowRun.id);
    } catch (error) {
      notice(error.message);
    }
  });
  window.addEventListener("hashchange", route);
  refreshAll();
  route();
}

start();

// lora-mcp dashboard: plain JavaScript, no build step. Data comes from /api/v1; live updates from its event
// stream, read with fetch() so the bearer token travels in a header (EventSource cannot send one).
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "lora-mcp-token";
const $ = (root, sel) => root.querySelector(sel);
const tid = (root, id) => root.querySelector(`[data-testid="${id}"]`);
let current = null; // the view being shown: {stop()}

// -- auth and requests ------------------------------------------------------------------------------------------

function authHeaders(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

let asking = null;
function askToken(message) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-error").textContent = message || "";
  asking = new Promise((resolve) => {
    document.getElementById("token-form").onsubmit = () => {
      sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value.trim());
      asking = null;
      resolve();
    };
    dialog.showModal();
  });
  return asking;
}

async function request(path, options = {}) {
  for (;;) {
    const reply = await fetch(API + path, { ...options, headers: authHeaders(options.headers || {}) });
    if (reply.status !== 401) return reply;
    await askToken(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused." : "");
  }
}

async function api(path, options) {
  const reply = await request(path, options);
  const body = reply.headers.get("content-type")?.includes("json") ? await reply.json() : await reply.text();
  if (!reply.ok) throw new Error(body.detail ? `${body.detail} ${body.hint || ""}` : String(body));
  return body;
}

// -- server-sent events over fetch ------------------------------------------------------------------------------

function followEvents(path, onEvent, { after = 0, isFinal = () => false } = {}) {
  let lastId = after, stopped = false, controller = null, retry = 1000;
  const conn = document.getElementById("conn");
  async function once() {
    controller = new AbortController();
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastId) headers["Last-Event-ID"] = String(lastId);
    const reply = await fetch(API + path, { headers, signal: controller.signal, cache: "no-store" });
    if (reply.status === 401) { await askToken("That token was refused."); return; }
    if (!reply.ok || !reply.body) throw new Error(`event stream: HTTP ${reply.status}`);
    conn.textContent = "live";
    const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = { id: null, type: "message", data: [] };
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "id") event.id = val;
          else if (field === "event") event.type = val;
          else if (field === "data") event.data.push(val);
          else if (field === "retry" && /^\d+$/.test(val)) retry = Number(val);
        }
        if (event.id) lastId = Number(event.id);
        if (event.data.length) {
          const record = JSON.parse(event.data.join("\n"));
          onEvent(record);
          if (isFinal(record)) { stopped = true; controller.abort(); return; }
        }
      }
    }
  }
  (async () => {
    while (!stopped) {
      try { await once(); } catch (err) { if (stopped) break; console.warn(err); }
      if (stopped) break;
      conn.textContent = "reconnecting…";
      await new Promise((r) => setTimeout(r, retry));
    }
    conn.textContent = "idle";
  })();
  return { stop() { stopped = true; controller?.abort(); } };
}

// -- formatting -------------------------------------------------------------------------------------------------

function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return h ? `${h}h ${String(m).padStart(2, "0")}m` : m ? `${m}m ${String(s).padStart(2, "0")}s` : `${s}s`;
}
const num = (v, digits = 4) => (v == null ? "–" : Number(v).toPrecision(digits));
const percent = (job) => (job.total_steps ? Math.min(100, (100 * job.step) / job.total_steps) : job.state === "succeeded" ? 100 : 0);
const FINAL_STATES = new Set(["succeeded", "failed", "cancelled"]);
const FINAL_EVENTS = new Set(["job.succeeded", "job.failed", "job.cancelled"]);

// -- the job list -----------------------------------------------------------------------------------------------

function listOrder(a, b) {
  const rank = (j) => (j.state === "running" ? 0 : j.state === "queued" ? 1 : 2);
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  if (a.state === "queued") return (a.queue_position ?? 0) - (b.queue_position ?? 0);
  return 0; // the API lists newest first
}

function showList(view) {
  view.replaceChildren(document.getElementById("list-tpl").content.cloneNode(true));
  const body = $(view, "tbody"), empty = $(view, ".empty");
  let pending = null;
  async function refresh() {
    pending = null;
    const { jobs } = await api("/jobs");
    empty.hidden = jobs.length > 0;
    body.replaceChildren(...jobs.sort(listOrder).map((job) => {
      const row = document.createElement("tr");
      row.dataset.jobId = job.job_id;
      row.innerHTML = `<td><a></a></td><td class="hide-sm"></td><td><span class="badge"></span></td>
        <td><div class="prog"><div class="bar small"><div class="fill"></div></div><span></span></div></td>
        <td class="hide-sm"></td><td></td>`;
      const cells = row.children;
      $(cells[0], "a").textContent = job.job_id;
      $(cells[0], "a").href = `#/jobs/${encodeURIComponent(job.job_id)}`;
      cells[1].textContent = job.kind;
      const badge = $(cells[2], ".badge");
      badge.textContent = job.state === "queued" && job.queue_position ? `queued #${job.queue_position}` : job.state;
      badge.className = `badge ${job.state}`;
      $(cells[3], ".fill").style.width = `${percent(job)}%`;
      $(cells[3], "span").textContent = job.total_steps ? `${job.step}/${job.total_steps}` : job.phase;
      cells[4].textContent = num(job.loss);
      cells[5].textContent = duration(job.eta_seconds);
      row.onclick = () => { location.hash = `#/jobs/${encodeURIComponent(job.job_id)}`; };
      return row;
    }));
  }
  refresh().catch((err) => { body.innerHTML = ""; empty.hidden = false; empty.textContent = err.message; });
  const stream = followEvents("/events?after=-1", () => { pending ??= setTimeout(() => refresh().catch(console.warn), 300); });
  return { stop() { stream.stop(); clearTimeout(pending); } };
}

// -- the loss chart (canvas, no library) ------------------------------------------------------------------------

class LossChart {
  constructor(canvas) {
    this.canvas = canvas; this.points = new Map();
    this.resize = () => this.draw();
    window.addEventListener("resize", this.resize);
  }
  add(step, loss) {
    if (loss == null || !isFinite(loss)) return;
    this.points.set(step, loss);
    this.canvas.dataset.points = String(this.points.size);
    this.schedule();
  }
  schedule() { this.frame ??= requestAnimationFrame(() => { this.frame = null; this.draw(); }); }
  draw() {
    const c = this.canvas, ratio = window.devicePixelRatio || 1, width = c.clientWidth, height = 220;
    c.width = width * ratio; c.height = height * ratio;
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const pts = [...this.points.entries()].sort((a, b) => a[0] - b[0]);
    g.font = "11px system-ui"; g.fillStyle = "#8b95a3";
    if (pts.length < 1) { g.fillText("waiting for the first loss value…", 12, 24); return; }
    const pad = { l: 48, r: 10, t: 10, b: 24 };
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
    const Y = (y) => pad.t + (1 - (y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
    g.strokeStyle = "#262c35"; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      g.beginPath(); g.moveTo(pad.l, Y(y)); g.lineTo(width - pad.r, Y(y)); g.stroke();
      g.fillText(y.toPrecision(3), 4, Y(y) + 4);
    }
    g.fillText(String(x0), pad.l, height - 6);
    g.textAlign = "right"; g.fillText(`step ${x1}`, width - pad.r, height - 6); g.textAlign = "left";
    const line = (values, style, widthPx) => {
      g.strokeStyle = style; g.lineWidth = widthPx; g.beginPath();
      values.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
      g.stroke();
    };
    line(pts, "rgba(90,169,255,.35)", 1);
    const smooth = []; let ema = 0;
    pts.forEach(([x, y], i) => { ema = 0.9 * ema + 0.1 * y; smooth.push([x, ema / (1 - 0.9 ** (i + 1))]); });
    line(smooth, "#5aa9ff", 2);
  }
  stop() { window.removeEventListener("resize", this.resize); }
}

// -- the job page -----------------------------------------------------------------------------------------------

function showJob(view, jobId) {
  view.replaceChildren(document.getElementById("job-tpl").content.cloneNode(true));
  const el = (id) => tid(view, id);
  const chart = new LossChart(el("loss-chart"));
  const samples = new Map(); // file -> {file, step, prompt_index, url}
  const speed = []; // [time, step] of recent progress events
  let job = null, stream = null, logTimer = null, stopped = false;
  el("job-id").textContent = jobId;

  function render() {
    el("state").textContent = job.state === "queued" && job.queue_position ? `queued #${job.queue_position}` : job.state;
    el("state").className = `badge ${job.state}`;
    el("phase").textContent = job.phase;
    el("step").textContent = String(job.step);
    el("total").textContent = job.total_steps ?? "?";
    el("progress-fill").style.width = `${percent(job)}%`;
    el("loss").textContent = num(job.loss);
    el("lr").textContent = job.learning_rate == null ? "–" : Number(job.learning_rate).toExponential(1);
    el("eta").textContent = FINAL_STATES.has(job.state) ? "–" : duration(job.eta_seconds);
    el("elapsed").textContent = duration(job.elapsed_seconds);
    el("message").textContent = job.message || "";
    el("error").hidden = !job.error;
    if (job.error) el("error").textContent = `${job.error.message || ""} ${job.error.hint || ""}`;
    renderDelivery();
    el("cancel").hidden = FINAL_STATES.has(job.state);
    el("resume").hidden = !(job.kind === "train" && (job.state === "failed" || job.state === "cancelled"));
    if (speed.length >= 2) {
      const [t0, s0] = speed[0], [t1, s1] = speed[speed.length - 1];
      if (t1 > t0 && s1 >= s0) el("speed").textContent = `${((s1 - s0) / (t1 - t0)).toFixed(2)} it/s`;
    }
  }

  // Where the LoRA went (LORA_MCP_UPLOAD_ON_SUCCESS) and how the job's webhooks went; text nodes only.
  function renderDelivery() {
    const box = el("delivery"), up = job.upload, hooks = job.webhooks;
    box.replaceChildren();
    if (up) {
      const line = document.createElement("span");
      line.dataset.testid = "upload";
      if (up.state === "done" && up.uri) {
        line.append("Uploaded to ");
        const link = document.createElement(up.url ? "a" : "code");
        link.textContent = up.uri;
        if (up.url) Object.assign(link, { href: up.url, target: "_blank", rel: "noopener noreferrer" });
        line.append(link);
      } else {
        line.textContent = `S3 upload ${up.state} (attempt ${up.attempts})${up.error ? `: ${up.error}` : ""}`;
      }
      box.append(line);
    }
    if (hooks && hooks.configured) {
      const line = document.createElement("span");
      line.dataset.testid = "webhooks";
      line.textContent = `Webhooks: ${hooks.delivered} delivered, ${hooks.pending} pending, ${hooks.failed} failed`
        + (hooks.last_error ? ` (last error: ${hooks.last_error})` : "");
      box.append(line);
    }
    box.hidden = box.childElementCount === 0;
  }

  let statusTimer = null;
  async function loadStatus() {
    job = await api(`/jobs/${encodeURIComponent(jobId)}`);
    render();
    // The upload and the last webhooks happen after the job's final event, when its stream has closed: ask again.
    const waiting = job.upload?.state === "pending" || (job.webhooks?.pending ?? 0) > 0;
    if (FINAL_STATES.has(job.state) && waiting && !stopped && statusTimer === null) {
      statusTimer = setTimeout(() => { statusTimer = null; loadStatus().catch(console.warn); }, 2000);
    }
  }
  async function loadLog() {
    logTimer = null;
    const { lines } = await api(`/jobs/${encodeURIComponent(jobId)}/log?tail=200`);
    const pre = el("log"), atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.textContent = lines.join("\n");
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }
  const logSoon = () => { logTimer ??= setTimeout(() => loadLog().catch(console.warn), 500); };

  function addSample(s) {
    if (samples.has(s.file)) return;
    samples.set(s.file, s);
    const box = el("samples");
    box.querySelector(":scope > p.muted")?.remove();
    let row = box.querySelector(`[data-step="${s.step}"]`);
    if (!row) {
      row = document.createElement("div");
      row.className = "row"; row.dataset.step = s.step;
      row.innerHTML = `<h3>step ${s.step}</h3><div class="imgs"></div>`;
      const later = [...box.children].find((r) => Number(r.dataset.step) < s.step);
      box.insertBefore(row, later || null); // newest step first
    }
    const fig = document.createElement("figure");
    fig.innerHTML = `<img alt="sample" data-testid="sample"><figcaption>prompt ${s.prompt_index}</figcaption>`;
    const imgs = $(row, ".imgs");
    const after = [...imgs.children].find((f) => Number(f.dataset.prompt) > s.prompt_index);
    fig.dataset.prompt = s.prompt_index;
    imgs.insertBefore(fig, after || null);
    request(s.url.replace(API, "")).then((r) => r.blob()).then((blob) => {
      const img = $(fig, "img");
      img.src = URL.createObjectURL(blob);
      img.dataset.loaded = "1";
    }).catch(console.warn);
  }
  const sampleOf = (path) => {
    const file = path.split("/").pop(), m = /__(\d+)_(\d+)\./.exec(file);
    return m && { file, step: Number(m[1]), prompt_index: Number(m[2]), url: `${API}/jobs/${encodeURIComponent(jobId)}/samples/${file}` };
  };

  function onEvent(ev) {
    if (stopped || !job) return;
    const d = ev.data || {};
    if (ev.type === "job.progress") {
      Object.assign(job, {
        step: d.step ?? job.step, total_steps: d.total_steps ?? job.total_steps, phase: d.phase ?? job.phase,
        loss: d.loss ?? job.loss, learning_rate: d.learning_rate ?? job.learning_rate,
        eta_seconds: d.eta_seconds ?? job.eta_seconds, message: d.message ?? job.message,
      });
      if (d.loss != null) chart.add(d.step, d.loss);
      speed.push([ev.created_at, job.step]);
      while (speed.length > 2 && speed[speed.length - 1][0] - speed[0][0] > 20) speed.shift();
      if (job.state === "queued") job.state = "running";
      render();
      logSoon();
    } else if (ev.type === "job.sample" && d.path) {
      const s = sampleOf(d.path); if (s) addSample(s);
    } else {
      loadStatus().catch(console.warn); // started, checkpoint, the end: the full status says it all
      logSoon();
    }
  }

  el("cancel").onclick = async () => {
    el("cancel").disabled = true;
    try { job = await api(`/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" }); render(); }
    catch (err) { alert(err.message); } finally { el("cancel").disabled = false; }
  };
  el("resume").onclick = async () => {
    try { const next = await api(`/jobs/${encodeURIComponent(jobId)}/resume`, { method: "POST" }); location.hash = `#/jobs/${next.job_id}`; }
    catch (err) { alert(err.message); }
  };

  (async () => {
    try {
      await loadStatus();
    } catch (err) { el("message").textContent = err.message; return; }
    const id = encodeURIComponent(jobId);
    const [loss, list] = await Promise.all([api(`/jobs/${id}/loss`), api(`/jobs/${id}/samples`)]);
    loss.points.forEach((p) => chart.add(p.step, p.loss));
    list.samples.forEach(addSample);
    chart.draw();
    loadLog().catch(console.warn);
    api(`/jobs/${id}/config`).then((text) => { el("config").textContent = text; })
      .catch(() => { el("config").textContent = "(no config for this job)"; });
    if (!stopped) stream = followEvents(`/jobs/${id}/events`, onEvent, { isFinal: (ev) => FINAL_EVENTS.has(ev.type) });
  })();

  return { stop() { stopped = true; stream?.stop(); chart.stop(); clearTimeout(logTimer); clearTimeout(statusTimer); } };
}

// -- routing ----------------------------------------------------------------------------------------------------

function route() {
  current?.stop();
  const view = document.getElementById("view");
  const match = /^#\/jobs\/(.+)$/.exec(location.hash);
  current = match ? showJob(view, decodeURIComponent(match[1])) : showList(view);
}
window.addEventListener("hashchange", route);
route();

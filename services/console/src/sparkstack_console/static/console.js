// sparkstack console: one module, no framework, no third-party code. Every call goes to the
// orchestrator's public API with the user's key; text from the API only ever reaches the page
// as textContent (never as HTML).

const KEY = "sparkstack.key";
const main = document.getElementById("main");
const nav = document.getElementById("nav");
let me = null; // {name, admin, workspaces} of the key in use
let generation = 0; // of the page being drawn
let pageCleanup = null; // stops what the page left running (a live stream)

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function field(id, text, control) {
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id, text }), control);
}

async function api(path, options = {}) {
  const key = sessionStorage.getItem(KEY);
  const headers = { Authorization: `Bearer ${key}`, ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    logout("Your key was refused (revoked, expired or mistyped). Log in with a valid key.");
    throw new ApiError(401, "logged out");
  }
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const message = body?.error?.message || body?.detail || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

function logout(message) {
  sessionStorage.removeItem(KEY);
  me = null;
  sessionStorage.setItem("sparkstack.message", message || "");
  if (location.hash !== "#/login") location.hash = "#/login";
  else render();
}

function show(title, ...content) {
  main.replaceChildren(h("h1", { text: title }), ...content);
  document.title = `${title} · sparkstack console`;
  main.focus();
}

function problem(error) {
  return h("p", { class: "error", role: "alert", text: error.message || String(error) });
}

function when(value) {
  return value ? new Date(value).toLocaleString() : "—";
}

// -- login ---------------------------------------------------------------------------------
function loginPage(params, view) {
  const message = sessionStorage.getItem("sparkstack.message");
  sessionStorage.removeItem("sparkstack.message");
  const input = h("input", { id: "key", type: "password", autocomplete: "off", required: true });
  const status = h("p", { role: "status" });
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY, input.value.trim());
        try {
          me = await api("/v1/me");
          location.hash = "#/workspaces";
        } catch (error) {
          if (error.status !== 401) status.replaceChildren(problem(error));
        }
      },
    },
    field("key", "API key", input),
    h("button", { type: "submit" }, "Log in"),
  );
  view(
    "Log in",
    message ? h("p", { class: "error", role: "alert", text: message }) : null,
    h("p", { class: "muted" }, "Use a key from `sparkstack keys admin` or `sparkstack keys create`. It is kept in this tab only."),
    form,
    status,
  );
  input.focus();
}

// -- workspaces ----------------------------------------------------------------------------
async function workspacesPage(params, view) {
  view("Workspaces", h("p", { text: "Loading…" }));
  const list = await api("/v1/workspaces");
  const cards = await Promise.all(
    list.data.map(async (ws) => {
      const [jobs, stats] = await Promise.all([
        api(`/v1/jobs?workspace=${encodeURIComponent(ws.name)}&limit=500`),
        api(`/v1/workspaces/${encodeURIComponent(ws.name)}/stats`).catch(() => null),
      ]);
      const docs = stats ? Object.values(stats.documents || {}).reduce((a, b) => a + b, 0) : null;
      const states = {};
      for (const job of jobs.data) states[job.status] = (states[job.status] || 0) + 1;
      const last = jobs.data[0]?.updated_at || jobs.data[0]?.created_at;
      return h(
        "section",
        { class: "card", "aria-label": `workspace ${ws.name}` },
        h("h2", { text: ws.name }),
        h("p", { class: "muted", text: `known from: ${ws.sources.join(", ")}` }),
        stats
          ? h("p", { text: `${docs} document(s), ${stats.entities} entities, ${stats.relations} relations` + (stats.documents?.failed ? ` (${stats.documents.failed} failed)` : "") })
          : h("p", { class: "muted", text: "knowledge counts unavailable (rag-server)" }),
        h("p", { text: `jobs: ${jobs.total}` + (Object.keys(states).length ? " (" + Object.entries(states).map(([s, n]) => `${n} ${s}`).join(", ") + ")" : "") }),
        h("p", { class: "muted", text: `last activity: ${when(last)}` }),
        h("a", { href: `#/jobs?workspace=${encodeURIComponent(ws.name)}` }, "Jobs"),
        " · ",
        h("a", { href: `#/retrieve?workspace=${encodeURIComponent(ws.name)}` }, "Retrieve"),
        " · ",
        h("a", { href: `#/sessions?workspace=${encodeURIComponent(ws.name)}` }, "Sessions"),
        h("p", {}, h("button", { type: "button", class: "danger", "aria-label": `delete workspace ${ws.name}`, onclick: () => deleteWorkspace(ws.name, params, view) }, "Delete…")),
      );
    }),
  );
  // a workspace comes into being with its first content: "create" is naming it for an ingest
  const fresh = h("input", { required: true, pattern: "[A-Za-z0-9_\\-]{1,64}", placeholder: "letters, digits, - and _" });
  const create = h(
    "form",
    { onsubmit: (e) => { e.preventDefault(); location.hash = `#/ingest?workspace=${encodeURIComponent(fresh.value)}`; } },
    field("new-ws", "New workspace", fresh),
    h("button", { type: "submit" }, "Create and ingest…"),
  );
  view(
    "Workspaces",
    create,
    cards.length ? h("div", { class: "cards" }, cards) : h("p", { text: "No workspace yet: ingest a codebase with `sparkstack ingest`." }),
  );
}

async function deleteWorkspace(name, params, view) {
  const typed = prompt(`Delete workspace "${name}" with its knowledge, jobs, uploads and sessions? This cannot be undone. Type its name to confirm.`);
  if (typed === null) return;
  if (typed !== name) {
    main.append(h("p", { class: "error", role: "alert", text: "The name did not match: nothing was deleted." }));
    return;
  }
  try {
    await api(`/v1/workspaces/${encodeURIComponent(name)}?confirm=${encodeURIComponent(name)}`, { method: "DELETE" });
    await workspacesPage(params, view);
    main.append(h("p", { class: "ok", role: "status", text: `Workspace "${name}" deleted.` }));
  } catch (error) {
    main.append(problem(error));
  }
}


// -- ingest --------------------------------------------------------------------------------
const ARCHIVE = /\.(zip|tar|tar\.gz|tgz|tar\.bz2|tar\.xz)$/i;
const DOCUMENT = /\.(md|markdown|rst|txt|html?|pdf)$/i;

async function ingestPage(params, view) {
  const list = await api("/v1/workspaces");
  const workspace = h("input", { list: "ingest-ws-list", required: true, value: params.get("workspace") || list.data[0]?.name || (me.admin ? "default" : me.workspaces[0] || "") });
  const names = h("datalist", { id: "ingest-ws-list" }, list.data.map((w) => h("option", { value: w.name })));
  const name = h("input", { placeholder: "from the folder or archive" });
  const files = h("input", { type: "file", multiple: true });
  const folder = h("input", { type: "file", webkitdirectory: true });
  const drop = h(
    "div",
    { class: "drop", id: "drop", tabindex: "0", role: "region", "aria-label": "drop zone: files, a folder or an archive" },
    "Drop files, a folder or an archive here",
  );
  const progress = h("section", { "aria-label": "upload and job progress", "aria-live": "polite" });
  const start = (items) => upload(items, workspace.value.trim(), name.value.trim(), progress);
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    start(await droppedFiles(e.dataTransfer));
  });
  files.addEventListener("change", () => start([...files.files].map((f) => ({ path: f.name, file: f }))));
  folder.addEventListener("change", () => start([...folder.files].map((f) => ({ path: f.webkitRelativePath || f.name, file: f }))));
  view(
    "Ingest",
    h("form", { onsubmit: (e) => e.preventDefault() }, field("ingest-ws", "Workspace", workspace), names, field("ingest-name", "Codebase name (optional)", name), field("ingest-files", "Choose files", files), field("ingest-folder", "Choose a folder", folder)),
    drop,
    progress,
  );
}

async function droppedFiles(transfer) {
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((ok, bad) => entry.file(ok, bad));
      out.push({ path: prefix + entry.name, file });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  const entries = [...transfer.items].map((item) => [item.webkitGetAsEntry?.(), item.getAsFile()]);
  for (const [entry, file] of entries) {
    if (entry) await walk(entry, "");
    else if (file) out.push({ path: file.name, file });
  }
  return out;
}

// One upload: a single archive or document as it is; anything else packed into a tar.gz
// here (the files never leave the browser any other way).
async function upload(items, workspace, codebase, progress) {
  if (!items.length) return;
  const say = (text, cls = "") => progress.replaceChildren(h("p", { class: cls, role: cls === "error" ? "alert" : null, text }));
  let body, route;
  if (items.length === 1 && ARCHIVE.test(items[0].path)) {
    body = items[0].file;
    route = "/v1/codebase/ingest";
  } else if (items.length === 1 && DOCUMENT.test(items[0].path)) {
    body = items[0].file;
    route = "/v1/documents/ingest";
  } else {
    say(`Packing ${items.length} files…`);
    const top = items[0].path.includes("/") ? items[0].path.split("/")[0] : "";
    const strip = top && items.every((i) => i.path.startsWith(`${top}/`));
    codebase = codebase || (strip ? top : "upload");
    body = await tarGz(items.map((i) => ({ path: strip ? i.path.slice(top.length + 1) : i.path, file: i.file })), `${codebase}.tar.gz`);
    route = "/v1/codebase/ingest";
  }
  const form = new FormData();
  form.append("workspace", workspace);
  if (route === "/v1/codebase/ingest" && codebase) form.append("name", codebase);
  form.append("file", body, body.name);
  const bar = h("progress", { max: "100", value: "0", "aria-label": "upload" });
  progress.replaceChildren(h("p", { text: `Uploading ${body.name} (${(body.size / 1e6).toFixed(1)} MB)` }), bar);
  let job;
  try {
    job = await send(route, form, (fraction) => (bar.value = Math.round(fraction * 100)));
  } catch (error) {
    say(`Upload failed: ${error.message}`, "error");
    return;
  }
  const line = h("p", { id: "job-line", text: `Job ${job.job_id}: ${job.status}` });
  progress.replaceChildren(h("p", { text: `Uploaded ${body.name}.` }), line);
  await followJob(job.job_id, (j) => {
    const done = j.status === "completed" ? " — searchable" : "";
    line.textContent = `Job ${j.id}: ${j.status}${done}; ${progressText(j)}`;
    if (j.error) line.append(h("span", { class: "error", text: ` ${j.error}` }));
  });
}

// XMLHttpRequest for the upload's progress events (fetch has none for uploads).
function send(route, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", route);
    xhr.setRequestHeader("Authorization", `Bearer ${sessionStorage.getItem(KEY)}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new Error("the connection failed"));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {}
      if (xhr.status === 401) {
        logout("Your key was refused (revoked, expired or mistyped). Log in with a valid key.");
        reject(new Error("logged out"));
      } else if (xhr.status >= 400) reject(new Error(body?.error?.message || `${xhr.status}`));
      else resolve(body);
    };
    xhr.send(form);
  });
}

// Server-sent events read with fetch (EventSource cannot send the key).
async function readEvents(url, onEvent, signal) {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` }, signal });
  if (!response.ok || !response.body) throw new ApiError(response.status, "cannot follow");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = /^event: (.*)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (event && onEvent(event, data ? JSON.parse(data) : null) === false) return;
    }
  }
}

function followJob(id, onJob) {
  return readEvents(`/v1/jobs/${id}/events`, (event, job) => {
    if (event === "job") onJob(job);
    return event !== "end";
  });
}

// A ustar archive of the files, gzipped by the browser.
async function tarGz(items, name) {
  const enc = new TextEncoder();
  const parts = [];
  const put = (header, offset, length, text) => header.set(enc.encode(text).slice(0, length), offset);
  for (const { path, file } of items) {
    let prefix = "";
    let base = path;
    if (enc.encode(path).length > 100) {
      const split = path.lastIndexOf("/", 154);
      prefix = path.slice(0, split);
      base = path.slice(split + 1);
      if (split < 0 || enc.encode(base).length > 100) continue; // too long for ustar: skipped
    }
    const header = new Uint8Array(512);
    put(header, 0, 100, base);
    put(header, 100, 8, "0000644\0");
    put(header, 108, 8, "0000000\0");
    put(header, 116, 8, "0000000\0");
    put(header, 124, 12, file.size.toString(8).padStart(11, "0") + "\0");
    put(header, 136, 12, Math.floor(Date.now() / 1000).toString(8).padStart(11, "0") + "\0");
    put(header, 148, 8, "        ");
    header[156] = "0".charCodeAt(0);
    put(header, 257, 8, "ustar\u000000");
    put(header, 345, 155, prefix);
    const sum = header.reduce((a, b) => a + b, 0);
    put(header, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
    parts.push(header, file, new Uint8Array((512 - (file.size % 512)) % 512));
  }
  parts.push(new Uint8Array(1024));
  const gz = new Blob(parts).stream().pipeThrough(new CompressionStream("gzip"));
  const blob = await new Response(gz).blob();
  return new File([blob], name, { type: "application/gzip" });
}


// -- graph ---------------------------------------------------------------------------------
const CODE_KINDS = new Set(["module", "class", "struct", "interface", "enum", "trait", "function", "method"]);
const PALETTE = ["#0b57d0", "#b3261e", "#146c2e", "#8c4a00", "#6a1b9a", "#00696f", "#5f6368", "#c2185b"];

function loadScript(src) {
  if (document.querySelector(`script[src="${src}"]`)) return Promise.resolve();
  return new Promise((ok, bad) => {
    const el = h("script", { src });
    el.addEventListener("load", ok);
    el.addEventListener("error", () => bad(new Error(`could not load ${src}`)));
    document.head.append(el);
  });
}

async function graphPage(params, view) {
  await loadScript("vendor/graphology-0.26.0.umd.min.js");
  await loadScript("vendor/sigma-3.0.3.min.js");
  const list = await api("/v1/workspaces");
  if (!list.data.length) return view("Graph", h("p", { text: "No workspace in this key's scope." }));
  const ws = params.get("workspace") || list.data[0].name;
  const wsSelect = h("select", { onchange: () => (location.hash = `#/graph?workspace=${encodeURIComponent(wsSelect.value)}`) }, list.data.map((w) => h("option", { value: w.name, selected: w.name === ws }, w.name)));
  const query = h("input", { type: "search", placeholder: "symbol, file or entity" });
  const results = h("ul", { class: "results", "aria-label": "matching entities" });
  const filters = h("fieldset", { class: "filters" }, h("legend", { text: "Show types" }));
  const stats = h("p", { class: "muted", role: "status", id: "graph-stats", text: "Search for an entity to start." });
  const details = h("section", { class: "details", "aria-label": "entity details", "aria-live": "polite" });
  const canvas = h("div", { id: "graph-canvas", class: "graph-canvas", "aria-label": "graph view (the lists beside it offer the same with a keyboard)", role: "img" });
  const base = `/v1/workspaces/${encodeURIComponent(ws)}`;

  view(
    "Graph",
    h(
      "form",
      {
        onsubmit: async (event) => {
          event.preventDefault();
          const found = await api(`${base}/graph/labels?q=${encodeURIComponent(query.value)}&limit=30`);
          results.replaceChildren(...found.data.map((name) => h("li", {}, h("button", { type: "button", class: "link", onclick: () => open(name) }, name))));
          if (!found.data.length) results.replaceChildren(h("li", { text: "Nothing matches." }));
        },
      },
      field("graph-ws", "Workspace", wsSelect),
      field("graph-q", "Search entities", query),
      h("button", { type: "submit" }, "Search"),
    ),
    h("div", { class: "graph-layout" }, h("div", {}, results, filters, details), h("div", {}, stats, canvas)),
  );

  const graph = new graphology.Graph({ type: "undirected", multi: false });
  const hidden = new Set();
  const colors = new Map();
  const colorOf = (kind) => {
    if (!colors.has(kind)) colors.set(kind, PALETTE[colors.size % PALETTE.length]);
    return colors.get(kind);
  };
  const hiddenEdges = new Set();
  const edgeKinds = (attrs) => String(attrs.kinds || "related").split(/[,\s]+/).filter(Boolean);
  const renderer = new Sigma(graph, canvas, {
    nodeReducer: (node, data) => (hidden.has(data.kind) ? { ...data, hidden: true } : data),
    edgeReducer: (edge, data) => (edgeKinds(data).every((k) => hiddenEdges.has(k)) ? { ...data, hidden: true } : data),
    labelRenderedSizeThreshold: 5,
  });
  renderer.on("clickNode", ({ node }) => open(node));

  const refresh = () => {
    stats.textContent = `${graph.order} nodes, ${graph.size} edges shown`;
    const kinds = new Set();
    graph.forEachNode((_, a) => kinds.add(a.kind));
    const relations = new Set();
    graph.forEachEdge((_, a) => edgeKinds(a).forEach((k) => relations.add(k)));
    const toggle = (set, key, box) => {
      box.checked ? set.delete(key) : set.add(key);
      renderer.refresh();
    };
    filters.replaceChildren(
      h("legend", { text: "Show types and relations" }),
      ...[...kinds].sort().map((kind) => {
        const box = h("input", { type: "checkbox", id: `kind-${kind}`, checked: !hidden.has(kind), onchange: () => toggle(hidden, kind, box) });
        return h("div", { class: "field inline" }, box, h("label", { for: `kind-${kind}` }, swatch(colorOf(kind)), ` ${kind}`));
      }),
      ...[...relations].sort().map((kind) => {
        const box = h("input", { type: "checkbox", id: `rel-${kind}`, checked: !hiddenEdges.has(kind), onchange: () => toggle(hiddenEdges, kind, box) });
        return h("div", { class: "field inline" }, box, h("label", { for: `rel-${kind}` }, `— ${kind}`));
      }),
    );
  };

  // CSSOM, not a style attribute: the CSP allows no inline style
  const swatch = (color) => {
    const el = h("span", { class: "swatch" });
    el.style.background = color;
    return el;
  };
  const place = (name, kind, around, index, count) => {
    if (graph.hasNode(name)) return;
    const center = around && graph.hasNode(around) ? graph.getNodeAttributes(around) : { x: Math.random() * 10, y: Math.random() * 10 };
    const angle = (2 * Math.PI * index) / Math.max(count, 1);
    const radius = 1 + Math.sqrt(count) / 2;
    graph.addNode(name, { label: name, kind: kind || "unknown", color: colorOf(kind || "unknown"), size: 6, x: center.x + radius * Math.cos(angle), y: center.y + radius * Math.sin(angle) });
  };

  // the neighbourhood of one entity, loaded when asked for: never the whole graph
  async function expand(name) {
    const sub = await api(`${base}/graph?label=${encodeURIComponent(name)}&max_depth=1&max_nodes=200`);
    place(name, sub.nodes.find((n) => n.id === name)?.properties?.entity_type, null, 0, 1);
    const others = sub.nodes.filter((n) => n.id !== name);
    others.forEach((n, i) => place(n.id, n.properties?.entity_type, name, i, others.length));
    for (const e of sub.edges) {
      if (graph.hasNode(e.source) && graph.hasNode(e.target) && !graph.hasEdge(e.source, e.target)) {
        graph.addEdge(e.source, e.target, { kinds: e.properties?.keywords || "", size: 1 });
      }
    }
    refresh();
    return sub;
  }

  async function open(name) {
    details.replaceChildren(h("p", { text: `Loading ${name}…` }));
    try {
      const [entity, sub] = await Promise.all([api(`${base}/symbols/${encodeURIComponent(name)}`), expand(name)]);
      const code = entity.chunks?.[0];
      const neighbours = sub.nodes.filter((n) => n.id !== name).map((n) => n.id).sort();
      details.replaceChildren(
        h("h2", { text: name }),
        h("p", { class: "muted", text: `${entity.type || "entity"} · ${entity.file_path || ""} · ${entity.degree} edge(s)` }),
        entity.description ? h("pre", { text: entity.description }) : null,
        code ? h("details", { open: true }, h("summary", { text: `Source: ${code.file_path || ""}` }), h("pre", { class: "code", text: code.content || "" })) : null,
        CODE_KINDS.has(entity.type)
          ? h(
              "p",
              {},
              h("button", { type: "button", class: "secondary", onclick: () => related(name, "callers") }, "Callers"),
              " ",
              h("button", { type: "button", class: "secondary", onclick: () => related(name, "callees") }, "Callees"),
            )
          : null,
        h("section", { id: "related", "aria-live": "polite" }),
        h("h3", { text: `Neighbours (${neighbours.length})` }),
        h("ul", { class: "results" }, neighbours.map((n) => h("li", {}, h("button", { type: "button", class: "link", onclick: () => open(n) }, n)))),
      );
    } catch (error) {
      details.replaceChildren(problem(error));
    }
  }

  async function related(name, which) {
    const out = details.querySelector("#related");
    try {
      const found = await api(`${base}/symbols/${encodeURIComponent(name)}/${which}`);
      found.data.forEach((n, i) => {
        place(n.entity, null, name, i, found.data.length);
        if (!graph.hasEdge(name, n.entity)) graph.addEdge(name, n.entity, { kinds: "calls", size: 2 });
      });
      refresh();
      out.replaceChildren(
        h("h3", { text: `${which === "callers" ? "Callers" : "Callees"} (${found.data.length})` }),
        h("ul", { class: "results", "aria-label": which }, found.data.map((n) => h("li", {}, h("button", { type: "button", class: "link", onclick: () => open(n.entity) }, n.entity)))),
      );
    } catch (error) {
      out.replaceChildren(problem(error));
    }
  }

  if (params.get("entity")) open(params.get("entity"));
}


// -- documents -----------------------------------------------------------------------------
async function documentsPage(params, view) {
  const list = await api("/v1/workspaces");
  if (!list.data.length) return view("Documents", h("p", { text: "No workspace in this key's scope." }));
  const ws = params.get("workspace") || list.data[0].name;
  const status = params.get("status") || "";
  const page = Number(params.get("page") || "1");
  const go = (changes) => {
    const next = new URLSearchParams({ workspace: ws, status, page: "1", ...changes });
    location.hash = `#/documents?${next}`;
  };
  const wsSelect = h("select", { onchange: () => go({ workspace: wsSelect.value }) }, list.data.map((w) => h("option", { value: w.name, selected: w.name === ws }, w.name)));
  const statusSelect = h("select", { onchange: () => go({ status: statusSelect.value }) }, ["", "processed", "pending", "processing", "failed"].map((v) => h("option", { value: v, selected: v === status }, v || "any")));
  const query = new URLSearchParams({ page: String(page), page_size: "50" });
  if (status) query.set("status", status);
  const base = `/v1/workspaces/${encodeURIComponent(ws)}/documents`;
  const docs = await api(`${base}?${query}`);
  const note = h("div", { "aria-live": "polite" });
  const counts = Object.entries(docs.status_counts || {}).map(([k, v]) => `${v} ${k}`).join(", ");
  const rows = docs.data.map((d) =>
    h(
      "tr",
      {},
      h("td", { text: d.file_path || "—" }),
      h("td", { text: d.status }),
      h("td", { text: d.chunks_count ?? "—" }),
      h("td", { text: when(d.updated_at) }),
      h("td", { class: d.error_msg ? "error" : "", text: d.error_msg || "" }),
      h(
        "td",
        {},
        h(
          "button",
          {
            type: "button",
            class: "danger",
            "aria-label": `delete document ${d.file_path || d.id}`,
            onclick: async () => {
              if (!confirm(`Delete "${d.file_path || d.id}" from ${ws}? Its chunks, entities and relations go; the next ingest of its codebase indexes it again.`)) return;
              try {
                await api(`${base}/${encodeURIComponent(d.id)}`, { method: "DELETE" });
                await documentsPage(params, view);
              } catch (error) {
                note.replaceChildren(problem(error));
              }
            },
          },
          "Delete",
        ),
      ),
    ),
  );
  const reindex = h(
    "button",
    {
      type: "button",
      class: "secondary",
      onclick: async () => {
        try {
          const r = await api(`${base}/reindex`, { method: "POST" });
          note.replaceChildren(h("p", { class: "ok", role: "status", text: r.message || "Re-indexing the failed documents." }));
        } catch (error) {
          note.replaceChildren(problem(error));
        }
      },
    },
    "Re-index failed documents",
  );
  view(
    "Documents",
    h("form", { onsubmit: (e) => e.preventDefault() }, field("docs-ws", "Workspace", wsSelect), field("docs-status", "Status", statusSelect), reindex),
    h("p", { class: "muted", text: `${docs.total} document(s)${counts ? ` (${counts})` : ""}` }),
    note,
    h("table", {}, h("thead", {}, h("tr", {}, ["File", "Status", "Chunks", "Updated", "Error", ""].map((t) => h("th", { scope: "col", text: t })))), h("tbody", {}, rows)),
    h(
      "p",
      {},
      page > 1 ? h("a", { href: `#/documents?${new URLSearchParams({ workspace: ws, status, page: String(page - 1) })}` }, "Previous") : null,
      " ",
      docs.has_more ? h("a", { href: `#/documents?${new URLSearchParams({ workspace: ws, status, page: String(page + 1) })}` }, "Next") : null,
    ),
  );
}

// -- jobs ----------------------------------------------------------------------------------
const JOB_STATES = ["", "queued", "parsing", "indexing", "completed", "completed_with_errors", "failed", "superseded"];

async function jobsPage(params, view) {
  const workspace = params.get("workspace") || "";
  const status = params.get("status") || "";
  const wsInput = h("input", { id: "jobs-ws", value: workspace, placeholder: "all" });
  const stateSelect = h("select", { id: "jobs-status" }, JOB_STATES.map((s) => h("option", { value: s, selected: s === status }, s || "any")));
  const filters = h(
    "form",
    {
      onsubmit: (event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        if (wsInput.value) next.set("workspace", wsInput.value);
        if (stateSelect.value) next.set("status", stateSelect.value);
        location.hash = `#/jobs?${next}`;
      },
    },
    field("jobs-ws", "Workspace", wsInput),
    field("jobs-status", "Status", stateSelect),
    h("button", { type: "submit" }, "Filter"),
  );
  const query = new URLSearchParams({ limit: "100" });
  if (workspace) query.set("workspace", workspace);
  if (status) query.set("status", status);
  const jobs = await api(`/v1/jobs?${query}`);
  // live: any change to a job in view redraws the list (one stream for the whole page)
  const follower = new AbortController();
  pageCleanup = () => follower.abort();
  let pending = null;
  const events = `/v1/jobs/events${workspace ? `?workspace=${encodeURIComponent(workspace)}` : ""}`;
  readEvents(events, () => {
    pending ??= setTimeout(() => location.hash.startsWith("#/jobs") && render(), 500);
  }, follower.signal).catch(() => {});
  const rows = jobs.data.map((job) =>
    h(
      "tr",
      {},
      h("td", {}, h("a", { href: `#/job?id=${job.id}`, "aria-label": `job ${job.id}` }, job.id.slice(0, 8))),
      h("td", { text: job.workspace }),
      h("td", { text: job.codebase || job.filename || job.kind }),
      h("td", { text: job.status }),
      h("td", { text: progressText(job) }),
      h("td", { text: when(job.created_at) }),
      h(
        "td",
        {},
        job.status === "failed" || job.status === "completed_with_errors"
          ? h("button", { type: "button", class: "secondary", "aria-label": `retry job ${job.id}`, onclick: () => retry(job.id) }, "Retry")
          : null,
        job.error ? h("span", { class: "error", text: job.error }) : null,
      ),
    ),
  );
  view(
    "Jobs",
    filters,
    h("p", { class: "muted", text: `${jobs.total} job(s)` }),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["Job", "Workspace", "What", "Status", "Progress", "Created", ""].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows),
    ),
  );
}

function progressText(job) {
  const files = job.progress?.files || {};
  const docs = job.progress?.documents || {};
  return `files ${files.seen ?? 0} seen, ${files.added ?? 0} added, ${files.skipped ?? 0} skipped; documents ${docs.indexed ?? 0}/${docs.sent ?? 0} indexed`;
}

async function jobPage(params, view) {
  const id = params.get("id");
  const job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
  const summary = h("p", { id: "job-summary", role: "status" });
  const show = (j) => {
    summary.textContent = `${j.status}${j.status === "completed" ? " — searchable" : ""}; ${progressText(j)}`;
  };
  show(job);
  const docs = await api(`/v1/jobs/${encodeURIComponent(id)}/documents?limit=500`);
  const note = h("div", { "aria-live": "polite" });
  const download = job.upload_id
    ? h(
        "button",
        {
          type: "button",
          class: "secondary",
          onclick: async () => {
            // a plain link cannot carry the key: fetch it, then hand the browser a blob
            const r = await fetch(`/v1/documents/${job.upload_id}/download`, { headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` } });
            if (!r.ok) return note.replaceChildren(problem(new Error(r.status === 404 ? "the upload is gone (its retention ended)" : `${r.status}`)));
            const a = h("a", { href: URL.createObjectURL(await r.blob()), download: job.filename || "upload" });
            a.click();
            URL.revokeObjectURL(a.href);
          },
        },
        "Download the upload",
      )
    : null;
  view(
    `Job ${job.id.slice(0, 8)}`,
    h("p", { class: "muted", text: `${job.kind} · ${job.codebase || job.filename || ""} · workspace ${job.workspace} · created ${when(job.created_at)}` }),
    summary,
    job.error ? h("p", { class: "error", text: job.error }) : null,
    h("p", {}, download, " ", job.status === "failed" || job.status === "completed_with_errors" ? h("button", { type: "button", class: "secondary", onclick: () => retry(job.id) }, "Retry the failed part") : null),
    note,
    (job.errors || []).length ? h("details", {}, h("summary", { text: `${job.errors.length} file error(s)` }), h("ul", {}, job.errors.map((e) => h("li", { text: `${e.path || ""}: ${e.reason || e.error || JSON.stringify(e)}` })))) : null,
    h("h2", { text: `Documents (${docs.data.length})` }),
    h("table", {}, h("thead", {}, h("tr", {}, ["Document", "Source", "Status", "Error"].map((t) => h("th", { scope: "col", text: t })))), h("tbody", {}, docs.data.map((d) => h("tr", {}, h("td", {}, h("code", { text: (d.doc_id || d.id || "").slice(0, 16) })), h("td", { text: d.path || d.source || d.file_path || "" }), h("td", { text: d.status }), h("td", { class: "error", text: d.error || "" }))))),
  );
  if (!["completed", "completed_with_errors", "failed", "superseded"].includes(job.status)) {
    followJob(job.id, show).catch(() => {});
  }
}

async function retry(id) {
  try {
    await api(`/v1/jobs/${id}/retry`, { method: "POST" });
    render();
  } catch (error) {
    main.append(problem(error));
  }
}

// -- retrieve ------------------------------------------------------------------------------
async function retrievePage(params, view) {
  const list = await api("/v1/workspaces");
  const wsSelect = h("select", { id: "retrieve-ws", required: true }, list.data.map((ws) => h("option", { value: ws.name, selected: ws.name === params.get("workspace") }, ws.name)));
  const question = h("input", { id: "retrieve-q", required: true, minlength: "3", size: "60" });
  const mode = h("select", { id: "retrieve-mode" }, ["mix", "naive", "local", "global", "hybrid"].map((m) => h("option", { value: m }, m)));
  const out = h("section", { "aria-live": "polite", "aria-label": "retrieved context" });
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        out.replaceChildren(h("p", { text: "Retrieving…" }));
        try {
          const answer = await api(`/v1/workspaces/${encodeURIComponent(wsSelect.value)}/retrieve`, {
            method: "POST",
            json: { query: question.value, mode: mode.value, top_k: 8 },
          });
          out.replaceChildren(
            h("h2", { text: `${answer.chunks.length} chunk(s), ${answer.entities.length} entit(ies)` }),
            ...answer.chunks.map((c) => h("article", { class: "card" }, h("p", { class: "muted", text: c.source || "(no source)" }), h("pre", { text: c.content || "" }))),
          );
        } catch (error) {
          out.replaceChildren(problem(error));
        }
      },
    },
    field("retrieve-ws", "Workspace", wsSelect),
    field("retrieve-q", "Question", question),
    field("retrieve-mode", "Mode", mode),
    h("button", { type: "submit" }, "Retrieve"),
  );
  view("Retrieve", list.data.length ? form : h("p", { text: "No workspace in this key's scope." }), out);
}

// -- sessions ------------------------------------------------------------------------------
async function sessionsPage(params, view) {
  const query = new URLSearchParams({ limit: "100" });
  if (params.get("workspace")) query.set("workspace", params.get("workspace"));
  const sessions = await api(`/v1/sessions?${query}`);
  view(
    "Sessions",
    sessions.data.length
      ? h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["Session", "Workspace", "Turns", "Last activity"].map((t) => h("th", { scope: "col", text: t })))),
          h(
            "tbody",
            {},
            sessions.data.map((s) =>
              h("tr", {}, h("td", {}, h("a", { href: `#/session?id=${encodeURIComponent(s.id)}` }, s.id)), h("td", { text: s.workspace }), h("td", { text: s.turn_count }), h("td", { text: when(s.updated_at || s.created_at) })),
            ),
          ),
        )
      : h("p", { text: "No session yet." }),
  );
}

async function sessionPage(params, view) {
  const session = await api(`/v1/sessions/${encodeURIComponent(params.get("id"))}`);
  view(
    `Session ${session.id}`,
    h("p", { class: "muted", text: `workspace ${session.workspace}, ${session.turn_count} turn(s)` }),
    ...session.messages.map((m) =>
      h(
        "div",
        { class: `turn ${m.role}` },
        h("p", { class: "muted", text: `turn ${m.turn} · ${m.role} · ${when(m.created_at)}` }),
        h("pre", { text: typeof m.content === "string" ? m.content : JSON.stringify(m.content) }),
        m.memory ? memoryDetails(m.turn, m.memory) : null,
      ),
    ),
  );
}

// What the orchestrator injected before this answer: each tier's state and the very lines
// that went into the memory block, with the tokens they took.
function memoryDetails(turn, memory) {
  const order = ["working", "recall", "archival"]; // the block's order (JSON keeps none)
  const tiers = Object.entries(memory.tiers || {}).sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
  return h(
    "details",
    { class: "memory" },
    h("summary", { text: `Memory given for turn ${turn}: ${memory.tokens} of ${memory.budget} tokens` }),
    h(
      "table",
      { "aria-label": `memory of turn ${turn}` },
      h("thead", {}, h("tr", {}, ["Tier", "State", "Found", "Injected", "Tokens"].map((t) => h("th", { scope: "col", text: t })))),
      h(
        "tbody",
        {},
        tiers.map(([tier, t]) =>
          h(
            "tr",
            {},
            h("td", { text: tier }),
            h("td", { text: t.state }),
            h("td", { text: t.found ?? 0 }),
            h("td", {}, t.items?.length ? h("ul", {}, t.items.map((item) => h("li", { text: item }))) : "—"),
            h("td", { text: t.tokens ?? 0 }),
          ),
        ),
      ),
    ),
  );
}

// -- keys (admin) --------------------------------------------------------------------------
async function keysPage(params, view) {
  if (!me?.admin) {
    view("Keys", h("p", { text: "Only an admin key manages keys." }));
    return;
  }
  const keys = await api("/v1/keys?all=false");
  const name = h("input", { id: "key-name", required: true, maxlength: "64" });
  const workspaces = h("input", { id: "key-ws", placeholder: "ws-a, ws-b" });
  const admin = h("input", { id: "key-admin", type: "checkbox" });
  const created = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const made = await api("/v1/keys", {
            method: "POST",
            json: { name: name.value.trim(), workspaces: workspaces.value.split(",").map((w) => w.trim()).filter(Boolean), admin: admin.checked },
          });
          await keysPage(params, view);
          main.append(
            h("h2", { text: `Key "${made.name}" created` }),
            h("p", { text: "Copy it now: it is shown once." }),
            h("p", { class: "secret", id: "new-key", text: made.key }),
          );
        } catch (error) {
          created.replaceChildren(problem(error));
        }
      },
    },
    field("key-name", "Name", name),
    field("key-ws", "Workspaces (comma-separated)", workspaces),
    h("div", { class: "field inline" }, admin, h("label", { for: "key-admin" }, "admin")),
    h("button", { type: "submit" }, "Create key"),
  );
  const rows = keys.data.map((k) =>
    h(
      "tr",
      {},
      h("td", { text: k.name }),
      h("td", { text: k.admin ? "admin" : (k.workspaces || []).join(", ") }),
      h("td", { text: when(k.created_at) }),
      h("td", { text: when(k.last_used_at) }),
      h(
        "td",
        {},
        k.bootstrap
          ? h("span", { class: "muted", text: "bootstrap" })
          : h(
              "button",
              {
                type: "button",
                class: "danger",
                "aria-label": `revoke key ${k.name}`,
                onclick: async () => {
                  if (!confirm(`Revoke key "${k.name}"? Clients using it stop working within a second.`)) return;
                  try {
                    await api(`/v1/keys/${encodeURIComponent(k.name)}`, { method: "DELETE" });
                    await keysPage(params, view);
                  } catch (error) {
                    main.append(problem(error));
                  }
                },
              },
              "Revoke",
            ),
      ),
    ),
  );
  view(
    "Keys",
    form,
    created,
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Scope", "Created", "Last used", ""].map((t) => h("th", { scope: "col", text: t })))), h("tbody", {}, rows)),
  );
}

// -- router --------------------------------------------------------------------------------
const PAGES = {
  "/login": loginPage,
  "/workspaces": workspacesPage,
  "/jobs": jobsPage,
  "/job": jobPage,
  "/ingest": ingestPage,
  "/graph": graphPage,
  "/documents": documentsPage,
  "/retrieve": retrievePage,
  "/sessions": sessionsPage,
  "/session": sessionPage,
  "/keys": keysPage,
};

async function render() {
  const [path, query] = (location.hash.slice(1) || "/workspaces").split("?");
  const params = new URLSearchParams(query || "");
  const loggedIn = Boolean(sessionStorage.getItem(KEY));
  if (!loggedIn && path !== "/login") {
    location.hash = "#/login";
    return;
  }
  if (loggedIn && !me) {
    try {
      me = await api("/v1/me");
    } catch (error) {
      if (error.status !== 401) show("Error", problem(error));
      return;
    }
  }
  nav.hidden = !me;
  document.getElementById("logout").hidden = !me;
  document.getElementById("nav-keys").hidden = !me?.admin;
  document.getElementById("who").textContent = me ? `${me.name} (${me.admin ? "admin" : me.workspaces.join(", ")})` : "";
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#${path}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  pageCleanup?.();
  pageCleanup = null;
  const page = PAGES[path] || workspacesPage;
  // a page still loading when the user moved on must not draw over the newer one
  const drawing = ++generation;
  const view = (title, ...content) => {
    if (drawing === generation) show(title, ...content);
  };
  try {
    await page(params, view);
  } catch (error) {
    if (error.status !== 401) view("Error", problem(error));
  }
}

document.getElementById("logout").addEventListener("click", () => logout("Logged out."));
window.addEventListener("hashchange", render);
render();

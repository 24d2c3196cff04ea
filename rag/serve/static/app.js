// The page: search form -> /api/ask (or /api/ask/stream for LLM answers) -> answer and passages.
// Text from papers is only ever set as textContent, never parsed as HTML.

const $ = (id) => document.getElementById(id);
const FIELDS = ["section", "paper", "since", "until", "k"];
let lastOpener = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function say(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (Array.isArray(body.detail)) {
      return body.detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ");
    }
    return body.detail || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

export async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

async function loadInfo() {
  try {
    const status = await api("/api/status");
    const ok = status.sources.filter((s) => s.status === "ok").length;
    $("index-info").textContent =
      `${ok} of ${status.sources.length} sources, ${status.counts.chunks ?? status.index.size} passages · snapshot ${status.snapshot_id}`;
    const list = $("paper-ids");
    list.replaceChildren(...status.sources.filter((s) => s.status === "ok").map((s) =>
      el("option", { value: s.source.id, label: s.title || s.source.title || s.source.id })));
  } catch (error) {
    $("index-info").textContent = `No index: ${error.message}`;
  }
}

function queryParams() {
  const params = new URLSearchParams({ q: $("q").value.trim() });
  for (const name of FIELDS) {
    const value = $(name).value.trim();
    if (value && !(name === "k" && value === "5")) params.set(name, value);
  }
  params.set("answer", $("answer-mode").value);
  return params;
}

function clearResults() {
  $("answer").hidden = true;
  $("results").hidden = true;
  $("answer-text").replaceChildren();
  $("answer-notice").hidden = true;
  $("passages").replaceChildren();
}

async function search(event) {
  event?.preventDefault();
  const params = queryParams();
  if (!params.get("q")) { say("Type a question first.", true); $("q").focus(); return; }
  history.replaceState(null, "", `?${params}`);
  clearResults();
  say("Searching…");
  $("go").disabled = true;
  try {
    if (params.get("answer") === "llm") await streamAnswer(params);
    else render(await api(`/api/ask?${params}`));
  } catch (error) {
    say(error.message, true);
  } finally {
    $("go").disabled = false;
  }
}

function streamAnswer(params) {
  // Each sentence arrives once its citations are checked (never the raw reply); the final `answer` event carries
  // the whole checked answer, which replaces them.
  return new Promise((resolve, reject) => {
    const source = new EventSource(`/api/ask/stream?${params}`);
    $("answer").hidden = false;
    $("answer-method").textContent = "(LLM, streaming…)";
    source.addEventListener("sentence", (e) => { $("answer-text").append(renderSentence(JSON.parse(e.data)), " "); });
    source.addEventListener("answer", (e) => { source.close(); render(JSON.parse(e.data)); resolve(); });
    source.addEventListener("error", (e) => {
      source.close();
      reject(new Error(e.data ? JSON.parse(e.data).detail : "the stream was cut off; try again"));
    });
  });
}

function render(payload) {
  clearResults();
  const count = payload.passages.length;
  say(count ? `${count} passage${count === 1 ? "" : "s"} for “${payload.query}”.` :
    "No passages matched. Try other words or fewer filters.");
  renderSummary(payload.summary);
  const list = $("passages");
  payload.passages.forEach((p) => list.append(renderPassage(p)));
  $("results").hidden = count === 0;
}

function renderSentence(sentence) {
  // One checked sentence with its [n] markers; a flagged one (its citations could not be checked) is marked.
  const part = document.createDocumentFragment();
  const span = el("span", { class: sentence.flagged ? "flagged" : "", text: sentence.text });
  if (sentence.flagged) span.title = sentence.flagged;
  part.append(span);
  for (const n of sentence.markers) {
    part.append(" ", el("a", { href: `#p${n}`, class: "marker", "aria-label": `passage ${n}`, text: `[${n}]`,
      onclick: (e) => { e.preventDefault(); focusPassage(n); } }));
  }
  return part;
}

function renderSummary(summary) {
  if (!summary || !summary.sentences.length) return;
  const text = $("answer-text");
  for (const sentence of summary.sentences) text.append(renderSentence(sentence), " ");
  $("answer-method").textContent = summary.method === "llm" ? "(LLM, citations checked)" : "(extractive)";
  if (summary.notice) { $("answer-notice").textContent = summary.notice; $("answer-notice").hidden = false; }
  $("answer").hidden = false;
}

function focusPassage(n) {
  const item = $(`p${n}`);
  if (!item) return;
  item.scrollIntoView({ block: "start" });
  item.focus();
}

function citationLine(c) {
  const parts = [c.label];
  if (c.version) parts.push(`arXiv:${c.version}`);
  if (c.section) parts.push(`§ ${c.section}`);
  return parts.join(" · ");
}

function renderPassage(p) {
  const c = p.citation;
  const paged = /#page=\d+$/.test(c.url);
  const open = paged
    ? el("button", { type: "button", class: "open", text: `Open p. ${c.page_start}`,
        "aria-label": `Open ${c.label} at page ${c.page_start}`, onclick: (e) => openPassage(p, e.currentTarget) })
    : el("a", { class: "open button", href: c.url, target: "_blank", rel: "noopener noreferrer", text: "Open",
        "aria-label": `Open ${c.title || c.label} (new tab)` });
  return el("li", { id: `p${p.rank}`, class: "passage", tabindex: "-1", "data-id": p.id },
    el("h3", {}, el("span", { class: "n", text: `[${p.rank}] ` }), el("span", { text: c.title || c.source_id })),
    el("p", { class: "text", text: p.text }),
    el("p", { class: "cite" }, el("span", { text: citationLine(c) }), " · ",
      el("a", { href: c.url, target: "_blank", rel: "noopener noreferrer", text: c.url })),
    el("div", { class: "actions" }, open,
      el("button", { type: "button", class: "bib", text: "BibTeX", "aria-label": `Copy BibTeX for ${c.label}`,
        onclick: () => copyBibtex(c) })));
}

async function openPassage(p, opener) {
  lastOpener = opener;
  say(`Opening ${p.citation.label}…`);
  try {
    const [viewer, passage] = await Promise.all([import("./viewer.js"), api(`/api/passages/${encodeURIComponent(p.id)}`)]);
    if (!passage.pdf) {
      say(`No cached PDF of ${p.citation.label}; its link opens the original.`, true);
      return;
    }
    await viewer.show(passage, closeViewer);
    say(`Showing ${p.citation.label}.`);
  } catch (error) {
    say(`Could not open the PDF: ${error.message}`, true);
  }
}

function closeViewer() {
  $("viewer").hidden = true;
  document.body.classList.remove("viewing");
  lastOpener?.focus();
}

async function copyBibtex(c) {
  try {
    const response = await fetch(`/api/bibtex?source=${encodeURIComponent(c.source_id)}`);
    if (!response.ok) throw new Error(await errorText(response));
    const entry = await response.text();
    await copyText(entry);
    say(`BibTeX for ${c.label} copied.`);
  } catch (error) {
    say(`Could not copy BibTeX: ${error.message}`, true);
  }
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const box = $("copy-box"); // plain http on another host: the clipboard API is off, the old way still works
  box.value = text;
  box.select();
  if (!document.execCommand("copy")) throw new Error("the browser refused; select the text and copy it yourself");
}

function restore() {
  const params = new URLSearchParams(location.search);
  if (!params.get("q")) return;
  $("q").value = params.get("q");
  for (const name of FIELDS) if (params.get(name)) $(name).value = params.get(name);
  if (params.get("answer")) $("answer-mode").value = params.get("answer");
  if (FIELDS.some((name) => name !== "k" && params.get(name))) $("filters").open = true;
  search();
}

$("search").addEventListener("submit", search);
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !$("viewer").hidden) closeViewer();
});
loadInfo();
restore();

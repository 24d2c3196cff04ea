// A small PDF viewer on the bundled pdf.js: one page on a canvas, its text layer on top, the passage highlighted.

import * as pdfjs from "/static/vendor/pdfjs/pdf.min.mjs";

pdfjs.GlobalWorkerOptions.workerSrc = "/static/vendor/pdfjs/pdf.worker.min.mjs";

const $ = (id) => document.getElementById(id);
const state = { url: null, doc: null, page: 1, passage: null, task: null, text: null, generation: 0, onClose: null };
const documents = new Map(); // pdf URL -> loading promise; a blob id names immutable content

function load(url) {
  if (!documents.has(url)) {
    const task = pdfjs.getDocument({ url, isEvalSupported: false, enableXfa: false });
    documents.set(url, task.promise.catch((error) => { documents.delete(url); throw error; }));
  }
  return documents.get(url);
}

export async function show(passage, onClose) {
  const c = passage.citation;
  state.onClose = onClose;
  state.passage = passage;
  state.url = passage.pdf;
  state.doc = await load(passage.pdf);
  $("viewer-title").textContent = c.title || c.source_id;
  $("viewer-cite").textContent = `${c.label}${c.section ? ` · § ${c.section}` : ""}`;
  $("viewer-file").href = `${passage.pdf}#page=${c.page_start}`;
  $("page-count").textContent = String(state.doc.numPages);
  $("viewer").hidden = false;
  document.body.classList.add("viewing");
  await renderPage(Math.min(Math.max(c.page_start, 1), state.doc.numPages));
  $("viewer-title").focus();
}

async function renderPage(number) {
  const generation = ++state.generation; // a newer call (next page, resize) wins; older ones stop drawing
  state.page = number;
  state.task?.cancel();
  state.text?.cancel();
  const page = await state.doc.getPage(number);
  if (generation !== state.generation) return;
  const box = $("page-box");
  const natural = page.getViewport({ scale: 1 });
  const scale = Math.min(2.5, Math.max(0.4, (box.clientWidth - 16) / natural.width));
  const viewport = page.getViewport({ scale });
  const ratio = window.devicePixelRatio || 1;
  const canvas = $("page-canvas");
  canvas.width = Math.floor(viewport.width * ratio);
  canvas.height = Math.floor(viewport.height * ratio);
  canvas.style.width = `${Math.floor(viewport.width)}px`;
  canvas.style.height = `${Math.floor(viewport.height)}px`;
  const holder = $("page");
  holder.style.setProperty("--total-scale-factor", String(scale));
  delete holder.dataset.highlighted;
  holder.dataset.page = String(number);
  $("page-number").textContent = String(number);
  $("prev-page").disabled = number <= 1;
  $("next-page").disabled = number >= state.doc.numPages;
  const layer = $("text-layer");
  layer.replaceChildren();
  state.task = page.render({ canvas, viewport, transform: ratio === 1 ? null : [ratio, 0, 0, ratio, 0, 0] });
  state.text = new pdfjs.TextLayer({ textContentSource: page.streamTextContent(), container: layer, viewport });
  try {
    await Promise.all([state.task.promise, state.text.render()]);
  } catch (error) {
    if (generation !== state.generation) return; // cancelled by a newer render
    throw error;
  }
  const first = highlight(layer, state.passage.text);
  holder.dataset.highlighted = String(layer.querySelectorAll(".highlight").length);
  first?.scrollIntoView({ block: "center" });
}

// ---- finding the passage in the page's text ----------------------------------------------------------------

function words(text) {
  return text.normalize("NFKC").toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
}

// Mark each text-layer span whose words appear, in order, in the passage. The index de-hyphenates line ends
// ("atten-" + "tion" -> "attention"), so a span's hyphenated last word and the next span's first are dropped.
export function highlight(layer, passageText) {
  const haystack = ` ${words(passageText).join(" ")} `;
  const spans = [...layer.querySelectorAll("span")].filter((s) => !s.classList.contains("markedContent"));
  const marked = spans.map((span) => {
    let w = words(span.textContent);
    if (/-\s*$/.test(span.textContent)) w = w.slice(0, -1);
    if (w.length < 3) return null; // too short to tell on its own; decided by its neighbours below
    return haystack.includes(` ${w.join(" ")} `);
  });
  let first = null;
  spans.forEach((span, i) => {
    const hit = marked[i] ?? (nearest(marked, i, -1) && nearest(marked, i, 1));
    span.classList.toggle("highlight", Boolean(hit) && span.textContent.trim() !== "");
    if (hit && !first) first = span;
  });
  return first;
}

function nearest(marked, i, step) {
  for (let j = i + step; j >= 0 && j < marked.length; j += step) if (marked[j] !== null) return marked[j];
  return false;
}

// ---- controls ------------------------------------------------------------------------------------------------

function turn(delta) {
  const next = state.page + delta;
  if (state.doc && next >= 1 && next <= state.doc.numPages) renderPage(next);
}

$("prev-page").addEventListener("click", () => turn(-1));
$("next-page").addEventListener("click", () => turn(1));
$("close-viewer").addEventListener("click", () => state.onClose?.());
let resizing = null;
window.addEventListener("resize", () => { // fit the page to the new width (a phone turned sideways)
  clearTimeout(resizing);
  resizing = setTimeout(() => { if (state.doc && !$("viewer").hidden) renderPage(state.page); }, 200);
});
$("viewer").addEventListener("keydown", (e) => {
  if (e.target.closest("input, select, textarea")) return;
  if (e.key === "ArrowLeft" || e.key === "PageUp") { e.preventDefault(); turn(-1); }
  if (e.key === "ArrowRight" || e.key === "PageDown") { e.preventDefault(); turn(1); }
});

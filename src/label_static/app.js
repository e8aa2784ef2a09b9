// The labelling page: fetches one pair at a time from the local server and posts judgments.
// No libraries and nothing from other origins (the server's CSP allows this origin only).
"use strict";

const $ = (id) => document.getElementById(id);
const KEYS = {"1": "a_better", "a": "a_better", "2": "b_better", "b": "b_better", "3": "tie", "t": "tie",
              "4": "both_bad", "x": "both_bad", "5": "skip", "s": "skip"};
const LABEL_TEXT = {a_better: "A better", b_better: "B better", tie: "tie", both_bad: "both bad", skip: "skipped"};
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const state = {annotator: null, pair: null, busy: false};

// ---------------------------------------------------------------- a small Python highlighter
const KEYWORDS = new Set(("False None True and as assert async await break class continue def del elif else " +
  "except finally for from global if import in is lambda nonlocal not or pass raise return try while with " +
  "yield match case").split(" "));
const BUILTINS = new Set(("abs all any bool dict divmod enumerate filter float frozenset int isinstance len " +
  "list map max min next print range reversed round set sorted str sum tuple type zip ValueError " +
  "TypeError KeyError IndexError Exception").split(" "));
// One token at the current position (sticky): comment, string, number, name, space, other.
const TOKEN = new RegExp([
  "(#[^\\n]*)",
  "((?:[rRbBuUfF]{1,2})?(?:\"\"\"[\\s\\S]*?(?:\"\"\"|$)|'''[\\s\\S]*?(?:'''|$)|\"(?:\\\\.|[^\"\\\\\\n])*\"?|'(?:\\\\.|[^'\\\\\\n])*'?))",
  "(\\d[\\d_]*(?:\\.[\\d_]*)?(?:[eE][+-]?\\d+)?[jJ]?)",
  "([A-Za-z_][A-Za-z0-9_]*)",
  "(\\s+)",
  "([^\\sA-Za-z0-9_])",
].join("|"), "y");

function highlight(pre, code) {
  pre.textContent = "";   // text nodes only: a completion can never inject markup
  const frag = document.createDocumentFragment();
  let pos = 0, prev = "";
  const add = (text, cls) => {
    if (!cls) { frag.appendChild(document.createTextNode(text)); return; }
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    frag.appendChild(span);
  };
  while (pos < code.length) {
    TOKEN.lastIndex = pos;
    const m = TOKEN.exec(code);
    if (!m || m[0].length === 0) { add(code[pos]); pos += 1; continue; }
    const [text, comment, string, number, name] = m;
    if (comment) add(text, "tok-comment");
    else if (string) add(text, "tok-string");
    else if (number) add(text, "tok-number");
    else if (name) {
      if (KEYWORDS.has(name)) add(text, "tok-keyword");
      else if (prev === "def" || prev === "class") add(text, "tok-def");
      else if (BUILTINS.has(name)) add(text, "tok-builtin");
      else add(text);
      prev = name;
    } else add(text, m[6] ? "tok-op" : null);
    if (!m[5] && !name) prev = "";
    pos += text.length;
  }
  pre.appendChild(frag);
}

// ---------------------------------------------------------------- talking to the server
async function api(path, options) {
  const r = await fetch(path, options);
  let body = null;
  try { body = await r.json(); } catch (e) { body = {error: r.statusText}; }
  if (!r.ok) { const err = new Error(body.error || r.statusText); err.status = r.status; throw err; }
  return body;
}

function flash(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "ok";
}

function show(id) {
  for (const s of ["login", "done", "task"]) $(s).hidden = s !== id;
}

function showLogin(error) {
  show("login");
  $("who").hidden = true;
  $("progress").textContent = "";
  if (error) flash(error, true);
  $("name-input").value = state.annotator || "";
  $("name-input").focus();
}

function setAnnotator(name) {
  state.annotator = name;
  try { localStorage.setItem("annotator", name); } catch (e) { /* private mode: the URL still has it */ }
  const url = new URL(location.href);
  url.searchParams.set("annotator", name);
  history.replaceState(null, "", url);
  $("annotator-name").textContent = name;
  $("who").hidden = false;
}

function render(r) {
  const p = r.progress;
  $("progress").textContent = `${p.judged} judged · ${p.left} left`;
  state.pair = r.pair || null;
  if (r.done) { show("done"); return; }
  show("task");
  const task = $("task");
  task.dataset.pairId = r.pair.pair_id;
  task.dataset.a = r.pair.a.hash;
  task.dataset.b = r.pair.b.hash;
  $("task-id").textContent = String(r.pair.task_id);
  highlight($("prompt"), r.pair.prompt);
  highlight($("code-a"), r.pair.a.completion);
  highlight($("code-b"), r.pair.b.completion);
  for (const side of ["a", "b"]) { $("result-" + side).hidden = true; $("result-" + side).textContent = ""; }
  $("show-results").disabled = false;
  $("reason").value = "";
}

async function loadNext() {
  try {
    render(await api("/api/next?annotator=" + encodeURIComponent(state.annotator)));
  } catch (e) {
    if (e.status === 400) showLogin(e.message); else flash(e.message, true);
  }
}

function setBusy(busy) {
  state.busy = busy;
  for (const b of document.querySelectorAll(".verdicts button")) b.disabled = busy;
}

async function judge(label) {
  if (state.busy || !state.pair) return;
  // a clicked button keeps focus, and Space/Enter would then judge the next pair unseen
  if (document.activeElement instanceof HTMLButtonElement) document.activeElement.blur();
  setBusy(true);
  try {
    const r = await api("/api/judge", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({annotator: state.annotator, pair_id: state.pair.pair_id, a: state.pair.a.hash,
                            label: label, reason: $("reason").value}),
    });
    flash(r.written ? `saved: ${LABEL_TEXT[label]}` : "already judged (not saved twice)");
    await loadNext();
  } catch (e) {
    flash(`not saved: ${e.message}`, true);
  } finally {
    setBusy(false);
  }
}

function renderResult(el, res) {
  el.textContent = "";
  const status = document.createElement("span");
  status.className = "status " + (res.passed ? "passed" : "failed");
  status.textContent = res.status || "unknown";
  el.appendChild(status);
  const run = res.rerun;
  const score = document.createElement("span");
  score.className = "score";
  if (run) score.textContent = `${run.asserts_passed}/${run.asserts_total} asserts passed`;
  else if (res.score !== null && res.score !== undefined) score.textContent = `score ${res.score.toFixed(2)} (asserts passed)`;
  el.appendChild(score);
  if (res.syntax_ok === false) {
    const s = document.createElement("span");
    s.className = "status failed";
    s.textContent = "syntax error";
    el.appendChild(s);
  }
  if (run) {
    const row = document.createElement("div");
    row.className = "asserts";
    run.assert_results.forEach((ok, i) => {
      const d = document.createElement("span");
      d.className = ok ? "ok" : "bad";
      d.title = `assert ${i + 1}: ${ok ? "passed" : "failed"}`;
      d.textContent = ok ? "✓" : "✗";
      row.appendChild(d);
    });
    el.appendChild(row);
    if (run.detail) {
      const d = document.createElement("div");
      d.className = "detail";
      d.textContent = run.detail;
      el.appendChild(d);
    }
  }
  el.hidden = false;
}

async function showResults() {
  if (!state.pair) return;
  const pair = state.pair;
  $("show-results").disabled = true;
  try {
    const r = await api(`/api/results?pair_id=${encodeURIComponent(pair.pair_id)}&a=${encodeURIComponent(pair.a.hash)}`);
    if (state.pair !== pair) return;   // moved on meanwhile
    renderResult($("result-a"), r.a);
    renderResult($("result-b"), r.b);
  } catch (e) {
    flash(e.message, true);
    $("show-results").disabled = false;
  }
}

// ---------------------------------------------------------------- events
document.addEventListener("keydown", (e) => {
  const typing = e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLInputElement;
  if (typing) { if (e.key === "Escape") e.target.blur(); return; }
  if (e.ctrlKey || e.metaKey || e.altKey || $("task").hidden) return;
  const key = e.key.toLowerCase();
  if (KEYS[key]) { e.preventDefault(); judge(KEYS[key]); }
  else if (key === "e") { e.preventDefault(); showResults(); }
  else if (key === "r") { e.preventDefault(); $("reason").focus(); }
});

for (const b of document.querySelectorAll(".verdicts button")) {
  b.addEventListener("click", () => judge(b.dataset.label));
}
$("show-results").addEventListener("click", showResults);
$("change").addEventListener("click", () => showLogin());
$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("name-input").value.trim();
  if (!NAME.test(name)) { flash("use 1-64 letters, digits, _ . - (starting with a letter or digit)", true); return; }
  flash("");
  setAnnotator(name);
  loadNext();
});

(async function start() {
  const fromUrl = new URLSearchParams(location.search).get("annotator");
  let name = fromUrl;
  if (!name) { try { name = localStorage.getItem("annotator"); } catch (e) { name = null; } }
  if (!name) {
    try { name = (await api("/api/config")).annotator; } catch (e) { name = null; }
  }
  if (!name) { showLogin(); return; }
  setAnnotator(name);
  await loadNext();
})();

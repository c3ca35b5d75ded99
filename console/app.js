// The agent console: every turn goes to the server with Analyze over gRPC-web, carrying the
// conversation's state from one reply to the next; customer turns show the guidance, agent turns
// their conduct flags. Text from the conversation is only ever set as textContent.

import { TriageClient } from "./grpc-web.js";
import { LOCALES, RTL, TEXT } from "./i18n.js";
import { parseTranscripts } from "./transcripts.js";

const $ = (id) => document.getElementById(id);
const page = {
  locale: "en",
  state: null, // ConversationState of the last reply; null before the first turn
  client: new TriageClient(""),
  queue: Promise.resolve(), // turns are assessed one after another, in order
  conversations: [],
  playing: 0, // replay generation: a new Play or Stop ends the previous one
};
const text = () => TEXT[page.locale] ?? TEXT.en;

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// --- locale -------------------------------------------------------------------------------

function chooseLocale() {
  const asked = new URLSearchParams(location.search).get("locale") ?? navigator.language ?? "en";
  const base = asked.toLowerCase().split("-")[0];
  return base in LOCALES ? base : "en";
}

function applyLocale(locale) {
  page.locale = locale;
  document.documentElement.lang = locale;
  document.documentElement.dir = RTL.has(locale) ? "rtl" : "ltr";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = text()[node.dataset.i18n];
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = text()[node.dataset.i18nPlaceholder];
  $("locale").value = locale;
  renderState();
  renderServer();
  // Already shown turns keep their hints (given in the locale asked then); their labels follow.
  for (const node of document.querySelectorAll("[data-label]")) node.textContent = text().labels[node.dataset.label] ?? node.dataset.label;
}

// --- server ---------------------------------------------------------------------------------

async function showServer() {
  page.server = { pending: true };
  renderServer();
  try {
    page.server = { info: await page.client.getInfo() };
  } catch (e) {
    page.server = { error: e.message };
  }
  renderServer();
}

function renderServer() {
  const { pending, info, error } = page.server ?? { pending: true };
  const line = pending ? text().connecting
    : info ? `${text().server}: ${info.model_version} · ${text().policy}: ${info.policy_version} (${info.policy_hash})`
    : `${text().notServing} — ${error}`;
  // Model and policy names are left-to-right whatever the page's direction.
  $("server-info").replaceChildren(el("bdi", {}, [line]));
}

function setStatus(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

/** Assesses one turn after the ones before it; resolves to true when it was shown. */
function submitTurn(turn) {
  const done = page.queue.then(async () => {
    setStatus(text().thinking);
    try {
      const reply = await page.client.analyze(turn, page.state, page.locale);
      page.state = reply.state;
      showTurn(turn, reply.assessment);
      renderState();
      setStatus("");
      return true;
    } catch (e) {
      setStatus(e.message, true);
      return false;
    }
  });
  page.queue = done;
  return done;
}

// --- rendering ------------------------------------------------------------------------------

function labelChip(label, cls = "chip flag") {
  return el("span", { className: cls, dataset: { label } }, [text().labels[label] ?? label]);
}

/** The turn's text with the words behind its flags marked; offsets are in code points. */
function bubble(value, spans) {
  const chars = Array.from(value);
  const parts = [];
  let at = 0;
  for (const s of [...spans].sort((a, b) => a.begin - b.begin)) {
    if (s.begin < at || s.end <= s.begin || s.end > chars.length) continue;
    parts.push(chars.slice(at, s.begin).join(""));
    parts.push(el("mark", { title: text().labels[s.label] ?? s.label, dataset: { testid: "span", label: s.label } }, [chars.slice(s.begin, s.end).join("")]));
    at = s.end;
  }
  parts.push(chars.slice(at).join(""));
  return el("div", { className: "bubble", dir: "auto" }, parts);
}

function showTurn(turn, a) {
  const customer = a.speaker === "SPEAKER_CUSTOMER";
  const item = el("li", { className: `turn ${customer ? "customer" : "agent"}`, id: `turn-${a.turn_index}`, dataset: { testid: "turn", speaker: customer ? "customer" : "agent", index: a.turn_index } }, [
    el("div", { className: "who" }, [`#${a.turn_index} · ${customer ? text().customer : text().agent} · ${a.language}`,
      // The model card does not measure this language: the page says so beside it.
      ...(a.language_measured ? [] : [el("span", { className: "unmeasured", dataset: { testid: "unmeasured" }, title: text().unmeasuredWhy }, [` · ${text().unmeasured}`])])]),
    bubble(turn.text, a.guidance?.evidence?.spans ?? []),
  ]);
  const chips = el("div", { className: "chips" });
  if (customer) {
    chips.append(el("span", { className: `chip severity-${a.severity}`, dataset: { testid: "severity" } }, [`${text().severity}: ${text().severities[a.severity] ?? a.severity}`]));
    for (const label of a.flags) chips.append(labelChip(label));
    item.append(chips);
    if (a.guidance) item.append(guidanceCard(a.guidance));
  } else {
    if (a.conduct.length === 0) chips.append(el("span", { className: "chip ok", dataset: { testid: "conduct", conduct: "" } }, [text().conductClean]));
    for (const c of a.conduct) chips.append(el("span", { className: "chip conduct", dataset: { testid: "conduct", conduct: c } }, [`${text().conduct}: ${text().conducts[c] ?? c}`]));
    item.append(chips);
  }
  $("turns").append(item);
  item.scrollIntoView({ block: "nearest" });
}

function guidanceCard(g) {
  const evidence = g.evidence && g.evidence.labels.length > 0
    ? el("p", { className: "evidence" }, [
        `${text().evidence}: `,
        ...g.evidence.labels.flatMap((label, i) => [i ? ", " : "", el("span", { dataset: { label } }, [text().labels[label] ?? label])]),
        " · ",
        el("a", { href: `#turn-${g.evidence.turn_index}`, onclick: () => highlight(g.evidence.turn_index) }, [`${text().turn} #${g.evidence.turn_index}`]),
      ])
    : null;
  const donts = g.donts.length > 0
    ? el("ul", { className: "donts", title: text().donts }, g.donts.map((d) => el("li", { dir: "auto", lang: d.hint?.locale ?? "" }, [d.hint?.text ?? d.rule_id])))
    : null;
  return el("div", { className: `guidance ${g.action}`, dataset: { testid: "guidance", action: g.action } }, [
    el("div", { className: "action" }, [text().actions[g.action] ?? g.action]),
    g.hint ? el("p", { className: "hint", dir: "auto", lang: g.hint.locale, dataset: { testid: "hint", locale: g.hint.locale } }, [g.hint.text]) : null,
    evidence,
    donts,
    el("p", { className: "rule" }, [`${text().rule}: `, el("bdi", { dir: "ltr" }, [`${g.rule_id} — ${g.source}`])]),
  ]);
}

function highlight(index) {
  for (const node of document.querySelectorAll(".turn.highlight")) node.classList.remove("highlight");
  $(`turn-${index}`)?.classList.add("highlight");
}

function renderState() {
  const s = page.state ?? { turns: 0, heated_turns: 0, boundary_set: false, manager_involved: false, calm_streak: 0 };
  $("heat").value = Math.min(s.heated_turns, 5);
  $("heat-value").textContent = String(s.heated_turns);
  for (const [id, on] of [["boundary", s.boundary_set], ["manager", s.manager_involved]]) {
    $(id).textContent = on ? text().yes : text().no;
    $(id).className = on ? "yes" : "no";
    $(id).dataset.value = String(on);
  }
  $("calm-streak").textContent = String(s.calm_streak);
  $("turn-count").textContent = String(s.turns);
}

function resetConversation() {
  page.playing++;
  page.state = null;
  $("turns").replaceChildren();
  renderState();
  setStatus("");
}

// --- replay ---------------------------------------------------------------------------------

async function loadFile(file) {
  const { conversations, errors } = parseTranscripts(file.name, await file.text());
  page.conversations = conversations;
  $("pick").replaceChildren(...conversations.map((c, i) => el("option", { value: String(i) }, [`${c.id} (${c.turns.length})`])));
  $("file-info").textContent = `${text().loaded}: ${conversations.length} ${text().conversationsIn}` + (errors.length ? ` — ${errors.slice(0, 3).join("; ")}` : "");
}

async function play() {
  const conversation = page.conversations[Number($("pick").value)];
  if (!conversation) return;
  resetConversation();
  const generation = page.playing;
  const pace = Number($("pace").value);
  for (const t of conversation.turns) {
    if (page.playing !== generation) return;
    const turn = { speaker: t.speaker, text: t.text, lang: t.lang };
    if (!(await submitTurn(turn))) return;
    await new Promise((resolve) => setTimeout(resolve, pace));
  }
}

// --- wiring ---------------------------------------------------------------------------------

function main() {
  $("locale").replaceChildren(...Object.entries(LOCALES).map(([code, name]) => el("option", { value: code }, [name])));
  $("locale").addEventListener("change", (e) => applyLocale(e.target.value));
  $("api-key").addEventListener("change", (e) => { page.client = new TriageClient("", e.target.value.trim()); showServer(); });
  $("composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("text");
    const turn = { speaker: new FormData($("composer")).get("speaker"), text: input.value, lang: null };
    input.value = "";
    if (!(await submitTurn(turn))) input.value = turn.text; // keep it to correct and resend
  });
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("reset").addEventListener("click", resetConversation);
  $("file").addEventListener("change", (e) => e.target.files[0] && loadFile(e.target.files[0]));
  $("play").addEventListener("click", play);
  $("stop").addEventListener("click", () => page.playing++);
  applyLocale(chooseLocale());
  showServer();
}

main();

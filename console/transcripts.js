// Reads the transcript files of `calmline score` (docs/QA.md) in the browser, for replay:
// JSON lines (one conversation per line) or CSV (one turn per row, grouped by conversation_id).

const SPEAKERS = { customer: "SPEAKER_CUSTOMER", agent: "SPEAKER_AGENT" };

function speaker(value, where) {
  const s = SPEAKERS[String(value ?? "").trim().toLowerCase()];
  if (!s) throw new Error(`${where}: speaker must be "customer" or "agent"`);
  return s;
}

/** `{conversations: [{id, locale, turns: [{speaker, text, lang}]}], errors: [string]}`. */
export function parseTranscripts(name, text) {
  return name.toLowerCase().endsWith(".csv") ? parseCsvFile(text) : parseJsonl(text);
}

function parseJsonl(text) {
  const conversations = [], errors = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    try {
      const record = JSON.parse(line);
      if (!Array.isArray(record.turns) || record.turns.length === 0) throw new Error("no turns");
      const turns = record.turns.map((t, k) => ({ speaker: speaker(t.speaker, `turn ${k}`), text: String(t.text ?? ""), lang: t.lang ?? null }));
      conversations.push({ id: String(record.id ?? `line ${i + 1}`), locale: record.locale ?? "", turns });
    } catch (e) {
      errors.push(`line ${i + 1}: ${e.message}`);
    }
  });
  return { conversations, errors };
}

/** RFC 4180: quoted fields may hold commas, quotes ("") and line breaks. */
export function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (field !== "" || row.length > 0) { row.push(field); rows.push(row); }
  return rows.filter((r) => r.some((f) => f.trim() !== ""));
}

function parseCsvFile(text) {
  const [header, ...rows] = parseCsv(text);
  const errors = [];
  const column = (name) => header?.indexOf(name) ?? -1;
  const [idCol, speakerCol, textCol, localeCol] = ["conversation_id", "speaker", "text", "locale"].map(column);
  if (idCol < 0 || speakerCol < 0 || textCol < 0) return { conversations: [], errors: ["the header needs conversation_id, speaker and text"] };
  const byId = new Map();
  rows.forEach((r, i) => {
    try {
      const id = r[idCol];
      if (!byId.has(id)) byId.set(id, { id, locale: localeCol >= 0 ? r[localeCol] : "", turns: [] });
      byId.get(id).turns.push({ speaker: speaker(r[speakerCol], `row ${i + 2}`), text: r[textCol] ?? "", lang: null });
    } catch (e) {
      errors.push(e.message);
    }
  });
  return { conversations: [...byId.values()], errors };
}

// End-to-end test of the agent console in a real headless Chromium (Debian's, driven by
// playwright-core): an English conversation typed turn by turn and a Hebrew one replayed from a
// transcript file, against a running `calmline serve --console`. Saves a screenshot of each.
//
//   node tests/console/e2e.mjs http://127.0.0.1:50051 target/console-e2e
//
// Run by tests/it/console.rs, which starts the server; exits non-zero with the failed check.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import path from "node:path";

const [base, outDir = "target/console-e2e"] = process.argv.slice(2);
if (!base) throw new Error("usage: e2e.mjs <server URL> [screenshot folder]");
const here = path.dirname(new URL(import.meta.url).pathname);
const transcripts = path.resolve(here, "../../docs/examples/transcripts.jsonl");
mkdirSync(outDir, { recursive: true });

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CALMLINE_CHROMIUM ?? "/usr/bin/chromium",
  // As root in CI, and on a machine whose only network is loopback.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && failures.push(`console error: ${m.text()}`));
  page.on("request", (r) => !r.url().startsWith(base) && failures.push(`request outside the server: ${r.url()}`));

  // The bare address leads to the page.
  const landing = await page.goto(`${base}/console`);
  check(landing.ok() && page.url().endsWith("/console/index.html"), "/console leads to /console/index.html");

  // --- English, typed -------------------------------------------------------------------
  await page.goto(`${base}/console/index.html?locale=en`);
  await page.getByTestId("server-info").filter({ hasText: "policy" }).waitFor({ timeout: 15000 });
  check((await page.locator("html").getAttribute("dir")) === "ltr", "English is left to right");

  const turns = page.getByTestId("turn");
  async function say(speaker, text) {
    const before = await turns.count();
    await page.getByTestId(speaker === "agent" ? "as-agent" : "as-customer").check();
    await page.getByTestId("text").fill(text);
    await page.getByTestId("text").press("Enter");
    await turns.nth(before).waitFor({ timeout: 15000 });
    return turns.nth(before);
  }
  const actionOf = async (turn) => turn.getByTestId("guidance").getAttribute("data-action");

  const complaint = await say("customer", "My router has dropped five times today and nobody calls me back. This is unacceptable.");
  check((await actionOf(complaint)) === "ACTION_ACKNOWLEDGE", "a complaint: acknowledge");
  const hint = complaint.getByTestId("hint");
  check((await hint.getAttribute("data-locale")) === "en" && (await hint.innerText()).length > 20, "the hint is shown, in English");

  check((await complaint.getByTestId("unmeasured").count()) === 0, "English is a measured language: no marker");

  const reply = await say("agent", "That's not our fault, the courier company messed it up.");
  check((await reply.getByTestId("conduct").first().getAttribute("data-conduct")) === "BLAMES_OTHERS", "an agent blaming others is flagged");

  const insult = await say("customer", "You are a useless idiot.");
  const insultAction = await actionOf(insult);
  check(["ACTION_LET_IT_PASS", "ACTION_STAY_CALM", "ACTION_SET_BOUNDARY"].includes(insultAction), `an insult climbs the ladder (${insultAction})`);
  check(/insult/.test(await insult.locator(".evidence").innerText()), "the evidence names the insult");
  const marked = await insult.getByTestId("span").allInnerTexts();
  check(marked.some((words) => /idiot|useless/.test(words)), `the bubble marks the words behind the flag (${JSON.stringify(marked)})`);
  check(Number(await page.locator("#heat-value").innerText()) >= 1, "the conversation is heated");

  const threat = await say("customer", "I know where you live and I will hurt you.");
  check((await actionOf(threat)) === "ACTION_INVOLVE_MANAGER", "a threat: involve a manager");
  check((await page.getByTestId("manager").getAttribute("data-value")) === "true", "the state shows the manager involved");

  // Finnish is scored, but the model card does not measure it: the turn says so.
  const finnish = await say("customer", "Tämä on täysin kestämätöntä, soitan teille jo kolmatta kertaa tällä viikolla!");
  check((await finnish.getByTestId("unmeasured").count()) === 1, "an unmeasured language is marked beside the turn");

  // A blank turn is refused by the server, shown, and adds no turn.
  const count = await turns.count();
  await page.getByTestId("text").fill("   ");
  await page.getByTestId("send").click();
  await page.getByTestId("status").filter({ hasText: "INVALID_ARGUMENT" }).waitFor({ timeout: 10000 });
  check((await turns.count()) === count, "a blank turn is refused with INVALID_ARGUMENT and not shown");
  await page.screenshot({ path: path.join(outDir, "console-en.png"), fullPage: true });

  // --- Hebrew, replayed from a transcript file ----------------------------------------------
  await page.getByTestId("locale").selectOption("he");
  check((await page.locator("html").getAttribute("dir")) === "rtl", "Hebrew turns the page right to left");
  await page.getByTestId("reset").click();
  await page.getByTestId("file").setInputFiles(transcripts);
  await page.getByTestId("pick").selectOption({ label: "c3 (3)" });
  await page.getByTestId("pace").selectOption("200");
  await page.getByTestId("play").click();
  await turns.nth(2).waitFor({ timeout: 20000 });
  const hebrew = /[\u0590-\u05FF]/;
  const first = turns.nth(0), last = turns.nth(2);
  check((await actionOf(first)) === "ACTION_ACKNOWLEDGE", "Hebrew complaint: acknowledge");
  check((await first.getByTestId("hint").getAttribute("data-locale")) === "he" && hebrew.test(await first.getByTestId("hint").innerText()), "the hint is in Hebrew");
  check(hebrew.test(await first.locator(".guidance .action").innerText()), "the action's name is in Hebrew");
  check((await turns.nth(1).getByTestId("conduct").count()) >= 1, "the agent turn shows its conduct");
  const lastAction = await actionOf(last);
  check(["ACTION_LET_IT_PASS", "ACTION_STAY_CALM", "ACTION_SET_BOUNDARY"].includes(lastAction), `Hebrew insult climbs the ladder (${lastAction})`);
  check((await last.locator(".bubble").evaluate((n) => getComputedStyle(n).direction)) === "rtl", "Hebrew text renders right to left");
  await page.screenshot({ path: path.join(outDir, "console-he.png"), fullPage: true });
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(`screenshots in ${outDir}`);

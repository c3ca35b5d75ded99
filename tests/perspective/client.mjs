// Perspective drop-in check: Google's Node.js API client (googleapis-common's Discovery, what
// googleapis' `google.discoverAPI` is built on, as the npm perspective-api-client 2.x used it)
// builds itself from calmline's discovery document and calls `comments:analyze`. Only the
// discovery URL (the base URL) and the API key differ from a call to Google's Perspective.
// Used by tests/it/perspective.rs:
//
//     node tests/perspective/client.mjs 127.0.0.1:50051 <api key>
//
// Prints one JSON object with what it saw; exits non-zero on any unexpected failure.
import {Discovery} from 'googleapis-common';

const [addr, key] = process.argv.slice(2);
const build = await new Discovery({}).discoverAPI(`http://${addr}/$discovery/rest?version=v1alpha1`);

async function refusal(client, requestBody) {
  try {
    await client.comments.analyze({requestBody});
    return {status: 200};
  } catch (e) {
    return {status: e.response?.status ?? e.status, error: e.response?.data?.error};
  }
}

const client = build({auth: key});
const seen = {};
seen.insult = (await client.comments.analyze({requestBody: {
  comment: {text: 'אתה אידיוט מוחלט, תתקן לי את האינטרנט'},
  requestedAttributes: {TOXICITY: {}, INSULT: {}},
  spanAnnotations: true,
  languages: ['he'],
  clientToken: 'node-1',
}})).data;
seen.calm = (await client.comments.analyze({requestBody: {
  comment: {text: 'Obrigado pela ajuda, o problema com a fatura foi resolvido hoje de manhã.'},
  requestedAttributes: {TOXICITY: {}, PROFANITY: {}},
}})).data;
seen.unknown_attribute = await refusal(client, {comment: {text: 'hi'}, requestedAttributes: {ATTACK_ON_AUTHOR: {}}});
seen.wrong_key = await refusal(build({auth: 'not-the-key'}), {comment: {text: 'hi'}, requestedAttributes: {TOXICITY: {}}});
console.log(JSON.stringify(seen));

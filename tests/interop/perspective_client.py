#!/usr/bin/env python3
"""Perspective drop-in check: Google's own Python client (google-api-python-client), built from
the discovery document exactly as Perspective's Python sample builds it — only the discovery URL
(the base URL) and the API key differ — calls calmline's `comments:analyze`. Used by
tests/it/perspective.rs.

    python tests/interop/perspective_client.py 127.0.0.1:50051 <api key>
Prints one JSON object with what it saw; exits non-zero on any unexpected failure.
"""
import json, sys

from googleapiclient import discovery
from googleapiclient.errors import HttpError


def build(addr, key):
    return discovery.build(
        "commentanalyzer",
        "v1alpha1",
        developerKey=key,
        discoveryServiceUrl=f"http://{addr}/$discovery/rest?version=v1alpha1",
        static_discovery=False,
    )


def refusal(call):
    """The HTTP status and Google error body of a call expected to fail."""
    try:
        call.execute()
    except HttpError as e:
        return {"status": e.resp.status, "error": json.loads(e.content)["error"]}
    return {"status": 200}


def main():
    addr, key = sys.argv[1], sys.argv[2]
    client = build(addr, key)
    seen = {}
    seen["insult"] = client.comments().analyze(body={
        "comment": {"text": "You are a complete idiot, just fix my internet."},
        "requestedAttributes": {"TOXICITY": {}, "INSULT": {}, "THREAT": {}},
        "spanAnnotations": True,
        "languages": ["en"],
        "doNotStore": True,
        "clientToken": "py-1",
    }).execute()
    seen["calm_hu"] = client.comments().analyze(body={
        "comment": {"text": "Köszönöm szépen, a router újra működik."},
        "requestedAttributes": {"TOXICITY": {}, "SEVERE_TOXICITY": {}},
    }).execute()
    seen["threshold"] = client.comments().analyze(body={
        "comment": {"text": "Thank you, that was helpful."},
        "requestedAttributes": {"TOXICITY": {"scoreThreshold": 0.9}},
    }).execute()
    seen["unknown_attribute"] = refusal(client.comments().analyze(body={"comment": {"text": "hi"}, "requestedAttributes": {"FLIRTATION": {}}}))
    seen["empty_text"] = refusal(client.comments().analyze(body={"comment": {"text": ""}, "requestedAttributes": {"TOXICITY": {}}}))
    seen["unsupported_language"] = refusal(client.comments().analyze(body={"comment": {"text": "nuqneH"}, "requestedAttributes": {"TOXICITY": {}}, "languages": ["tlh"]}))
    seen["wrong_key"] = refusal(build(addr, "not-the-key").comments().analyze(body={"comment": {"text": "hi"}, "requestedAttributes": {"TOXICITY": {}}}))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()

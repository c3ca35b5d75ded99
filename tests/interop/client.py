#!/usr/bin/env python3
"""Interop check: a Python grpcio client, generated from proto/calmline/v1/triage.proto at run
time with grpc_tools, calls a running calmline server. Used by tests/it/interop.rs.

    python tests/interop/client.py 127.0.0.1:50051
Prints one JSON line with what it saw; exits non-zero on any failure.
"""
import importlib, json, os, sys, tempfile

from grpc_tools import protoc
import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generate(out_dir):
    proto_dir = os.path.join(ROOT, "proto")
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
        os.path.join(proto_dir, "calmline", "v1", "triage.proto"),
    ])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out_dir)
    return importlib.import_module("calmline.v1.triage_pb2"), importlib.import_module("calmline.v1.triage_pb2_grpc")


def main():
    target = sys.argv[1]
    with tempfile.TemporaryDirectory() as out:
        for d in ("calmline", os.path.join("calmline", "v1")):
            os.makedirs(os.path.join(out, d), exist_ok=True)
            open(os.path.join(out, d, "__init__.py"), "w").close()
        pb, rpc = generate(out)
        with grpc.insecure_channel(target) as channel:
            stub = rpc.TriageStub(channel)
            result = {}

            # Analyze: two turns with the state round-tripped by the client.
            first = stub.Analyze(pb.AnalyzeRequest(
                turn=pb.Turn(speaker=pb.SPEAKER_CUSTOMER, text="You're completely useless and incompetent."), locale="en"), timeout=30)
            second = stub.Analyze(pb.AnalyzeRequest(
                turn=pb.Turn(speaker=pb.SPEAKER_CUSTOMER, text="You're completely useless and incompetent."),
                state=first.state, locale="en"), timeout=30)
            result["analyze_actions"] = [pb.Action.Name(first.assessment.guidance.action),
                                         pb.Action.Name(second.assessment.guidance.action)]
            result["analyze_state_turns"] = second.state.turns
            result["policy_hash"] = first.assessment.policy_hash

            # Converse: one stream, Hebrew hints.
            turns = [
                pb.ConverseRequest(turn=pb.Turn(speaker=pb.SPEAKER_CUSTOMER, text="אתה חסר תועלת לגמרי ולא מוכשר."), locale="he"),
                pb.ConverseRequest(turn=pb.Turn(speaker=pb.SPEAKER_AGENT, text="אני מבין, בוא נבדוק את זה יחד.")),
            ]
            replies = list(stub.Converse(iter(turns), timeout=30))
            result["converse_count"] = len(replies)
            result["converse_first_action"] = pb.Action.Name(replies[0].guidance.action)
            result["converse_hint_locale"] = replies[0].guidance.hint.locale
            result["converse_agent_has_guidance"] = replies[1].HasField("guidance")

            # A bad request: the status code reaches Python intact.
            try:
                stub.Analyze(pb.AnalyzeRequest(turn=pb.Turn(speaker=pb.SPEAKER_CUSTOMER, text=" ")), timeout=30)
                result["empty_text_code"] = "OK"
            except grpc.RpcError as e:
                result["empty_text_code"] = e.code().name
        print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()

"""Tests of the fine-tuning trainer (run by `make test`): gradients against finite differences, a
fixed-seed run that reproduces itself, bfloat16 products that train what float32 does, a run killed with SIGKILL and resumed that ends exactly where
an uninterrupted one does (twin pairs included), the twin loss's pairs, formula and plan, and the
trained adapters and head scoring in calmline as they do here."""
import json, os, signal, subprocess, sys, time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import finetune  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "models", "base")
CALMLINE = os.environ.get("CALMLINE_BIN", os.path.join(ROOT, "target", "release", "calmline"))


def tiny_model(dtype=torch.float64, first_layer=0, source_heads=0):
    """A random 11-layer encoder small enough for finite differences (the features pool layers 9-11)."""
    cfg = {"hidden": 8, "layers": 11, "heads": 2, "ffn": 12, "eps": 1e-12}
    rng = np.random.default_rng(7)
    h, f = cfg["hidden"], cfg["ffn"]
    w = {"emb.word": rng.normal(size=50 * h), "emb.pos": rng.normal(size=16 * h), "emb.type": rng.normal(size=2 * h),
         "emb.ln.w": 1 + 0.1 * rng.normal(size=h), "emb.ln.b": 0.1 * rng.normal(size=h)}
    for i in range(cfg["layers"]):
        for p, (rows, cols) in {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (f, h), "fo": (h, f)}.items():
            w[f"l{i}.{p}.w"] = rng.normal(size=rows * cols) / np.sqrt(cols)
            w[f"l{i}.{p}.b"] = 0.1 * rng.normal(size=rows)
        for n in ("aln", "oln"):
            w[f"l{i}.{n}.w"] = 1 + 0.1 * rng.normal(size=h)
            w[f"l{i}.{n}.b"] = 0.1 * rng.normal(size=h)
    head_w, head_b = rng.normal(size=(7, 2 * h)), rng.normal(size=7)
    model = finetune.Encoder(cfg, w, head_w, head_b, rank=2, alpha=4.0, first_layer=first_layer, seed=1, dtype=dtype, source_heads=source_heads)
    with torch.no_grad():  # B starts at zero; make it non-zero so every gradient path is exercised
        for name, p in model.lora.items():
            if name.endswith("_b"):
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3), dtype=dtype) * 0.1)
        if source_heads:  # and the source heads apart from the main one
            model.source_weights.add_(torch.randn(model.source_weights.shape, generator=torch.Generator().manual_seed(4), dtype=dtype))
    return model


def test_gradients_match_finite_differences():
    model = tiny_model(first_layer=8, source_heads=1)
    ids = torch.tensor([[0, 5, 9, 14, 2, 0], [0, 7, 3, 2, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]], dtype=torch.float64)
    with torch.no_grad():
        x = model.lower(ids, mask)
    y = torch.tensor([[1.0, 0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0, 1]], dtype=torch.float64)
    annotated = torch.tensor([[1.0, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]], dtype=torch.float64)
    names = [name for name, _ in model.named_parameters()]
    heads = torch.tensor([0, 1])  # the first row through the main head, the second through its set's own

    def loss_of(*values):
        logits = torch.func.functional_call(model, dict(zip(names, values)), (x, mask, heads))
        return finetune.masked_bce(logits, y, annotated)

    # Central differences in float64 against autograd, every parameter (adapters of layers 8-10, the
    # main head and a source head).
    assert torch.autograd.gradcheck(loss_of, tuple(p.detach().clone().requires_grad_() for p in model.parameters()), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_each_row_goes_through_its_own_head():
    model = tiny_model(first_layer=8, source_heads=2)
    ids = torch.tensor([[0, 5, 9, 2], [0, 7, 3, 2], [0, 4, 4, 2]])
    mask = torch.ones(3, 4, dtype=torch.float64)
    with torch.no_grad():
        x = model.lower(ids, mask)
        main = model.logits(x, mask)
        mixed = model.logits(x, mask, torch.tensor([0, 2, 1]))
        model.head_weight.copy_(model.source_weights[1]); model.head_bias.copy_(model.source_biases[1])
        second = model.logits(x, mask)
    assert torch.equal(mixed[0], main[0])
    assert torch.allclose(mixed[1], second[1]) and not torch.allclose(mixed[1], main[1])


def test_masked_bce_ignores_unannotated_labels_and_matches_the_formula():
    z = torch.tensor([[2.0, -1.0, 0.5, 0, 0, 0, 0]])
    y = torch.tensor([[1.0, 0.0, 1.0, 0, 0, 0, 0]])
    m = torch.tensor([[1.0, 1.0, 0.0, 0, 0, 0, 0]])
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    assert abs(finetune.masked_bce(z, y, m).item() - expected) < 1e-6


def test_dropout_acts_only_while_training_and_only_in_the_adapted_layers():
    plain, dropped = tiny_model(first_layer=8), tiny_model(first_layer=8)
    dropped.dropout = 0.5
    ids = torch.tensor([[0, 5, 9, 14, 2, 0]])
    mask = torch.ones(1, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(plain.lower(ids, mask), dropped.lower(ids, mask))  # layers below the adapters: none
        x = plain.lower(ids, mask)
        dropped.eval()
        assert torch.equal(plain.logits(x, mask), dropped.logits(x, mask))  # not when scoring
        dropped.train()
        torch.manual_seed(0)
        first = dropped.logits(x, mask)
        assert not torch.equal(first, plain.logits(x, mask))
        assert not torch.equal(first, dropped.logits(x, mask))  # a new mask each call
        torch.manual_seed(0)
        assert torch.equal(first, dropped.logits(x, mask))  # and the seed fixes them


def test_label_smoothing_moves_the_targets_towards_one_half():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0, 0, 0, 0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0, 1, 0, 0, 0, 0]], dtype=torch.float64)
    annotated = torch.tensor([[1.0, 1, 1, 0, 0, 0, 0]], dtype=torch.float64)
    smoothed = finetune.masked_bce(logits, y, annotated, smoothing=0.1)
    assert torch.allclose(smoothed, finetune.masked_bce(logits, y * 0.9 + 0.05, annotated))
    assert not torch.allclose(smoothed, finetune.masked_bce(logits, y, annotated))


def test_batch_plan_shows_every_text_as_often_as_repeated():
    plan = finetune.BatchPlan([3, 1, 4, 1, 5, 9, 2, 6], [1, 1, 3, 1, 1, 1, 1, 1], batch=3, seed=42)
    seen = sorted(i for _ in range(4) for i in plan.next_batch())
    assert seen == sorted([0, 1, 2, 2, 2, 3, 4, 5, 6, 7])


def test_a_rounds_repeat_multiplies_its_sources_for_that_rounds_turns_only():
    row = lambda source, group: (source, "en", [0, 2], [None] * 7, True, group)
    rows = [row("calmline_training", "en-t33-g004"),   # round 33
            row("calmline_training", "en-t3-g004"),    # round 3: not 33's prefix
            row("calmline_training", "en-t-g001"),     # round 1
            row("calmline_behaviour", "en-g017"),      # the suite: no round
            row("convabuse", None)]                    # a public text
    assert [finetune.round_of(r[5]) for r in rows] == ["33", "3", "1", None, None]
    assert finetune.round_of("he-t26b-g002") == "26b"
    repeats = finetune.example_repeats(rows, {"calmline_training": 6, "convabuse": 2}, {"33": 4, "1": 2})
    assert repeats == [24, 6, 12, 1, 2]


def test_twin_triples_pair_the_cases_of_one_group_whose_label_differs():
    T, F_, N = True, False, None
    row = lambda source, group, threat, rudeness: (source, "en", [0, 2], [N, rudeness, N, N, threat, N, N], True, group)
    rows = [row("calmline_training", "g1", T, N),    # 0: the threat
            row("calmline_training", "g1", F_, T),   # 1: its twin: lawful pressure, but rude
            row("calmline_training", "g1", F_, F_),  # 2: and a calm one
            row("calmline_behaviour", "g1", F_, N),  # 3: another source's group of the same name
            row("calmline_training", "g2", F_, N),   # 4: another group
            row("convabuse", None, F_, N)]           # 5: a public text: no group
    threat, rudeness = finetune.LABELS.index("threat"), finetune.LABELS.index("rudeness")
    assert finetune.twin_triples(rows) == [(0, 1, threat), (0, 2, threat), (1, 2, rudeness)]


def test_twin_loss_is_ranknets_and_falls_as_the_twins_part():
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 0.0])
    assert finetune.twin_loss(a, b).item() == pytest.approx((np.log1p(np.exp(-3.0)) + np.log(2.0)) / 2)
    assert finetune.twin_loss(a + 1, b) < finetune.twin_loss(a, b) < finetune.twin_loss(b, a)


def test_twin_plan_draws_every_pair_once_a_pass():
    plan = finetune.TwinPlan([(i, i + 1, 0) for i in range(10)], pairs=4, seed=5)
    drawn = plan.next_batch() + plan.next_batch() + plan.next_batch()[:2]
    assert sorted(drawn) == [(i, i + 1, 0) for i in range(10)]


def test_schedule_warms_up_then_decays_to_a_tenth():
    assert finetune.schedule(1, 100) == pytest.approx(0.2)
    assert finetune.schedule(5, 100) == pytest.approx(1.0)
    assert finetune.schedule(100, 100) == pytest.approx(0.1)


# ---- runs on the real encoder ----------------------------------------------------------------

needs_base = pytest.mark.skipif(not os.path.exists(os.path.join(BASE, "e5-small-q4.bin")), reason="models/base not fetched (make setup)")


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """A small real export: the project's behaviour suite through `calmline export-examples`."""
    if not os.path.exists(CALMLINE):
        pytest.skip("target/release/calmline not built")
    path = tmp_path_factory.mktemp("export") / "examples.jsonl"
    subprocess.run([CALMLINE, "export-examples", "--models", os.path.join(ROOT, "models"), "--data", str(path.parent / "no-public-data"),
                    "--no-neutral", "--no-indomain", "--no-training", "--no-conversations", "--out", str(path)], check=True, cwd=ROOT)
    rows = [json.loads(line) for line in open(path)]
    assert {r["source"] for r in rows} == {"calmline_behaviour"} and any(r["split"] == "train" for r in rows)
    # 240 training texts keep each run to seconds; every language of the suite is among them, and
    # the twins of the first ten that have any, for the twin loss.
    small = path.parent / "small.jsonl"
    train = [r for r in rows if r["split"] == "train"]
    assert all(r.get("group") for r in train), "the suite's cases are exported with their groups"
    picked = train[:: max(1, len(train) // 240)][:240]
    groups = {r["group"] for r in picked[:10]}
    picked += [r for r in train if r["group"] in groups and r not in picked]
    small.write_text("".join(json.dumps(r) + "\n" for r in picked))
    return small


def run_trainer(examples, out, *extra):
    args = [sys.executable, os.path.join(ROOT, "trainer", "finetune.py"), "--examples", str(examples), "--base", BASE,
            "--init-head", os.path.join(ROOT, "models"), "--out", str(out), "--steps", "12", "--batch", "8",
            "--first-layer", "8", "--threads", "2", "--log-every", "1", *extra]
    # Bitwise equality across processes needs MKL's strict reproducibility mode: without it, its
    # matrix products may take a path that depends on how a buffer happens to be aligned, so a
    # resumed run can end slightly away from the uninterrupted one. A CI run of 2026-12-06 saw
    # l10.ao.lora_a differ after a resume, once in six runs; alignment is the suspected cause, not
    # a proven one: if it recurs under this mode, the resume itself is to blame.
    env = dict(os.environ, MKL_CBWR="AUTO,STRICT")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@needs_base
@pytest.mark.parametrize("recipe", [(), ("--dropout", "0.1", "--label-smoothing", "0.1"), ("--twin-pairs", "3")],
                         ids=["plain", "dropout-and-smoothing", "twins"])
def test_a_killed_run_resumed_ends_where_an_uninterrupted_one_does(examples, tmp_path, recipe):
    # With dropout the run draws random masks, with twins random pairs: a resumed run must continue
    # the same sequences.
    straight = run_trainer(examples, tmp_path / "straight", *recipe)
    assert straight.wait(timeout=600) == 0, straight.stdout.read()
    again = run_trainer(examples, tmp_path / "again", *recipe)
    assert again.wait(timeout=600) == 0, again.stdout.read()
    log = lambda d: json.load(open(d / "train-log.json"))
    # A fixed seed reproduces its loss curve exactly.
    assert log(tmp_path / "straight")["losses"] == log(tmp_path / "again")["losses"]

    killed = run_trainer(examples, tmp_path / "killed", "--checkpoint-steps", "1", *recipe)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["step"] >= 5:
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert not (tmp_path / "killed" / "train-log.json").exists(), "the run finished before it was killed"
    resumed = run_trainer(examples, tmp_path / "killed", "--resume", *recipe)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert "resuming at step" in output
    for name in ("adapters.safetensors", "head.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "killed" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key} differs after kill and resume"
    assert log(tmp_path / "straight")["losses"] == log(tmp_path / "killed")["losses"]
    assert log(tmp_path / "straight")["twin_losses"] == log(tmp_path / "killed")["twin_losses"]
    assert bool(log(tmp_path / "straight")["twin_losses"]) == ("--twin-pairs" in recipe)


@needs_base
def test_bf16_products_follow_the_f32_run(examples, tmp_path):
    """--precision bf16 (the products in bfloat16, 1.6x the steps per second on AVX512_BF16, see
    BENCHMARKS.md) trains the same model: its losses and what it learns stay within a few percent
    of the f32 run on the same seed, and they are not bit-equal (the bfloat16 path really ran)."""
    runs = {}
    for precision in ("f32", "bf16"):
        run = run_trainer(examples, tmp_path / precision, "--precision", precision)
        assert run.wait(timeout=600) == 0, run.stdout.read()
        runs[precision] = json.load(open(tmp_path / precision / "train-log.json"))["losses"]
    f32, bf16 = (np.array([loss for _, loss in runs[p]]) for p in ("f32", "bf16"))
    assert not np.array_equal(f32, bf16)
    assert np.max(np.abs(bf16 - f32) / f32) < 0.03, (f32, bf16)
    a, b = load_file(tmp_path / "f32" / "adapters.safetensors"), load_file(tmp_path / "bf16" / "adapters.safetensors")
    for key in a:
        if key.endswith("lora_b"):  # B starts at zero: all of it is learnt
            assert torch.nn.functional.cosine_similarity(a[key].flatten(), b[key].flatten(), dim=0) > 0.95, key


@needs_base
def test_calmline_scores_the_trained_model_as_the_trainer_does(examples, tmp_path):
    """The trainer's forward is calmline's: the adapters and head it writes, merged and served by
    `calmline analyze`, give the scores the trainer computes for the same token ids."""
    run = run_trainer(examples, tmp_path / "model")
    assert run.wait(timeout=600) == 0, run.stdout.read()
    texts = ["You are useless, I want a manager now!", "Köszönöm, minden rendben.", "אתה מטומטם לגמרי", "Das ist eine Frechheit."]
    # f32: the trainer computes in f32, and int8 (the default on VNNI CPUs) moves scores by up to
    # a few hundredths (measured in BENCHMARKS.md), far more than this test's tolerance.
    served = subprocess.run([CALMLINE, "analyze", "--jsonl", "--precision", "f32", "--models", str(tmp_path / "model"), "--base", BASE],
                            input="".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)),
                            capture_output=True, text=True, check=True).stdout
    served = [json.loads(line)["scores"] for line in served.splitlines()]

    class Args:
        base, init_head, init_adapters, rank, alpha, first_layer, seed = BASE, str(tmp_path / "model"), str(tmp_path / "model"), 8, 16.0, 8, 1
    model = finetune.load_model(Args, torch.device("cpu"))
    tokenizer = __import__("tokenizers").Tokenizer.from_file(os.path.join(BASE, "tokenizer.json"))
    for text, scores in zip(texts, served):
        ids = torch.tensor([tokenizer.encode("query: " + text).ids])
        mask = torch.ones(ids.shape, dtype=torch.float32)
        with torch.no_grad():
            mine = torch.sigmoid(model.logits(model.lower(ids, mask), mask))[0]
        for label, value in zip(finetune.LABELS, mine.tolist()):
            assert abs(scores[label] - value) < 2e-3, (text, label, scores[label], value)


def test_a_soup_merges_to_the_average_of_its_inputs_merged_deltas(tmp_path):
    """trainer/soup.py: W + alpha/rank * B @ A of the soup equals the mean of the inputs' deltas,
    for inputs of different ranks and alphas; soup.json names the inputs."""
    import soup
    rng = np.random.default_rng(3)
    inputs = []
    for i, (rank, alpha) in enumerate([(4, 8.0), (2, 2.0), (4, 16.0)]):
        folder = tmp_path / f"in{i}"
        folder.mkdir()
        tensors = {}
        for name, (rows, cols) in {"l0.q": (6, 5), "l1.fi": (7, 5)}.items():
            tensors[f"{name}.lora_a"] = rng.normal(size=(rank, cols)).astype(np.float32)
            tensors[f"{name}.lora_b"] = rng.normal(size=(rows, rank)).astype(np.float32)
        from safetensors.numpy import save_file
        save_file(tensors, str(folder / "adapters.safetensors"))
        (folder / "adapters.json").write_text(json.dumps({"rank": rank, "alpha": alpha, "first_layer": 0}))
        inputs.append((rank, alpha, tensors, str(folder)))
    out = tmp_path / "soup"
    soup.main(["--out", str(out)] + [folder for *_, folder in inputs])
    settings, merged = soup.read_adapters(str(out))
    assert settings == {"rank": 10, "alpha": 10.0, "first_layer": 0}
    for name in ("l0.q", "l1.fi"):
        expected = np.mean([alpha / rank * t[f"{name}.lora_b"] @ t[f"{name}.lora_a"] for rank, alpha, t, _ in inputs], axis=0)
        got = settings["alpha"] / settings["rank"] * merged[f"{name}.lora_b"] @ merged[f"{name}.lora_a"]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert json.loads((out / "soup.json").read_text())["inputs"] == [folder for *_, folder in inputs]


def test_a_weighted_soup_merges_to_the_weighted_average_and_refuses_bad_weights(tmp_path):
    """--weights 1,3: the soup's merged delta is (1 * d0 + 3 * d1) / 4; soup.json records the
    weights; a wrong count or a non-positive weight is a clear error, not a silent equal average."""
    import soup
    from safetensors.numpy import save_file
    rng = np.random.default_rng(5)
    deltas, folders = [], []
    for i, (rank, alpha) in enumerate([(2, 4.0), (3, 3.0)]):
        folder = tmp_path / f"in{i}"
        folder.mkdir()
        a = rng.normal(size=(rank, 5)).astype(np.float32)
        b = rng.normal(size=(6, rank)).astype(np.float32)
        save_file({"l0.q.lora_a": a, "l0.q.lora_b": b}, str(folder / "adapters.safetensors"))
        (folder / "adapters.json").write_text(json.dumps({"rank": rank, "alpha": alpha, "first_layer": 0}))
        deltas.append(alpha / rank * b @ a)
        folders.append(str(folder))
    out = tmp_path / "soup"
    soup.main(["--out", str(out), "--weights", "1,3"] + folders)
    settings, merged = soup.read_adapters(str(out))
    got = settings["alpha"] / settings["rank"] * merged["l0.q.lora_b"] @ merged["l0.q.lora_a"]
    np.testing.assert_allclose(got, (deltas[0] + 3 * deltas[1]) / 4, rtol=1e-5, atol=1e-5)
    assert json.loads((out / "soup.json").read_text())["weights"] == [1.0, 3.0]
    for bad in ("1", "1,0", "1,-2", "1,x"):
        with pytest.raises(SystemExit):
            soup.main(["--out", str(tmp_path / "bad"), "--weights", bad] + folders)


def test_a_soup_cut_to_a_max_rank_is_exact_above_the_true_rank_and_the_best_approximation_below(tmp_path):
    """--max-rank: two rank-3 inputs that share one rank-2 part average to a delta of rank 4; cut to
    rank 4 the soup merges to that average exactly, cut to rank 2 to its best rank-2 approximation,
    and soup.json records the share of energy the cut dropped (zero, then the truncated SVD's)."""
    import soup
    from safetensors.numpy import save_file
    rng = np.random.default_rng(11)
    shared_a, shared_b = rng.normal(size=(2, 9)), rng.normal(size=(8, 2))
    deltas, folders = [], []
    for i in range(2):
        a = np.concatenate([shared_a, rng.normal(size=(1, 9))]).astype(np.float32)
        b = np.concatenate([shared_b, rng.normal(size=(8, 1))], axis=1).astype(np.float32)
        folder = tmp_path / f"in{i}"
        folder.mkdir()
        save_file({"l0.q.lora_a": a, "l0.q.lora_b": b}, str(folder / "adapters.safetensors"))
        (folder / "adapters.json").write_text(json.dumps({"rank": 3, "alpha": 3.0, "first_layer": 0}))
        deltas.append(b.astype(np.float64) @ a.astype(np.float64))
        folders.append(str(folder))
    average = np.mean(deltas, axis=0)
    u, s, vt = np.linalg.svd(average)
    for max_rank, expected in ((4, average), (2, (u[:, :2] * s[:2]) @ vt[:2])):
        out = tmp_path / f"soup{max_rank}"
        soup.main(["--out", str(out), "--max-rank", str(max_rank)] + folders)
        settings, merged = soup.read_adapters(str(out))
        assert settings == {"rank": max_rank, "alpha": float(max_rank), "first_layer": 0}
        assert merged["l0.q.lora_a"].shape == (max_rank, 9) and merged["l0.q.lora_b"].shape == (8, max_rank)
        np.testing.assert_allclose(merged["l0.q.lora_b"] @ merged["l0.q.lora_a"], expected, rtol=1e-4, atol=1e-4)
        record = json.loads((out / "soup.json").read_text())
        assert record["max_rank"] == max_rank
        assert record["largest_energy_dropped"] == pytest.approx(np.sum(s[max_rank:] ** 2) / np.sum(s**2), abs=1e-6)
    assert record["largest_energy_dropped"] > 0.01
    with pytest.raises(SystemExit):
        soup.main(["--out", str(tmp_path / "bad"), "--max-rank", "0"] + folders)


@needs_base
def test_a_run_started_from_an_adapter_set_starts_where_that_set_is(examples, tmp_path):
    """--init-adapters (continued training from a soup or an earlier run): the model loads the set
    exactly, takes its rank, alpha and first layer, and refuses a shape that contradicts them."""
    first = run_trainer(examples, tmp_path / "first")
    assert first.wait(timeout=600) == 0, first.stdout.read()
    trained = load_file(tmp_path / "first" / "adapters.safetensors")

    class Args:
        base, init_head, init_adapters, rank, alpha, first_layer, seed = BASE, str(tmp_path / "first"), str(tmp_path / "first"), 8, 16.0, 8, 99
    loaded = finetune.load_model(Args, torch.device("cpu")).adapters()
    assert loaded.keys() == trained.keys()
    for key in trained:
        assert torch.equal(loaded[key], trained[key]), key

    # One step at a negligible learning rate from the set: the adapters written are still the set's
    # (from B = 0 they would be nowhere near it).
    args = [sys.executable, os.path.join(ROOT, "trainer", "finetune.py"), "--examples", str(examples), "--base", BASE,
            "--init-head", str(tmp_path / "first"), "--init-adapters", str(tmp_path / "first"), "--out", str(tmp_path / "again"),
            "--steps", "1", "--batch", "8", "--threads", "2", "--learning-rate", "1e-12"]
    subprocess.run(args, check=True, capture_output=True)
    again = load_file(tmp_path / "again" / "adapters.safetensors")
    for key in trained:
        assert torch.allclose(again[key], trained[key], atol=1e-6), key
    assert json.load(open(tmp_path / "again" / "adapters.json"))["first_layer"] == 8

    refused = subprocess.run(args[:-2] + ["--rank", "4"], capture_output=True, text=True)
    assert refused.returncode != 0 and "have rank 8" in refused.stderr, refused.stderr

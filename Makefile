# The two commands: `make run` and `make test`. Both fetch the model files first when missing.
CARGO ?= cargo
CALMLINE = ./target/release/calmline

.PHONY: setup run console test python-test wheel train finetune eval judgement promote demo deploy-check

PYTHON ?= python3
# Debian's Chromium, for the console's browser test (tests/console/).
CHROMIUM ?= /usr/bin/chromium
INTEROP_VENV = .venv-interop

## Fetch and verify the encoder blob and tokenizer into models/base/ (skipped when present).
setup:
	@./models/fetch.sh

## The Python clients of the interop tests (tests/interop/: grpcio, and Google's API client for
## the Perspective drop-in), in their own virtualenv.
$(INTEROP_VENV)/.installed: tests/interop/requirements.txt
	$(PYTHON) -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
	@touch $@

## The fine-tuning trainer (trainer/: PyTorch, pinned from PyPI) and its tests, in their own virtualenv.
TRAIN_VENV = .venv-train
$(TRAIN_VENV)/.installed: trainer/requirements.txt
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install --quiet --disable-pip-version-check -r trainer/requirements.txt
	@touch $@

## The Python package (python/: PyO3 + maturin), its tests and the Spark job's test, in their own
## virtualenv; the default model's trained files and fetch.sh are staged into the package.
PY_VENV = .venv-python
$(PY_VENV)/.installed: python/requirements-test.txt
	$(PYTHON) -m venv $(PY_VENV)
	$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check -r python/requirements-test.txt
	@touch $@

PY_MODEL = python/calmline/model
$(PY_MODEL)/.staged: models/adapters.json models/adapters.safetensors models/head.json models/head.safetensors models/span-head.json models/fetch.sh
	mkdir -p $(PY_MODEL)
	cp $^ $(PY_MODEL)/
	@touch $@

## Java for the Spark test: Debian's headless JRE (17 on bookworm), when the machine has none.
JAVA = $(or $(shell command -v java),/usr/bin/java)
# After Chromium's install when both are needed: apt takes one install at a time.
$(JAVA): | $(CHROMIUM)
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends default-jre-headless

## A release wheel for every CPython from 3.9 (abi3), into target/wheels/:
## pip install target/wheels/calmline-*.whl. The encoder files (fetched by `setup`) are copied to
## where the installed package looks for them: $CALMLINE_BASE, else ~/.cache/calmline/base.
PY_BASE = $(or $(CALMLINE_BASE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/calmline/base)
wheel: setup $(PY_VENV)/.installed $(PY_MODEL)/.staged
	rm -rf target/wheels
	$(PY_VENV)/bin/maturin build --release --manifest-path python/Cargo.toml --out target/wheels
	mkdir -p $(PY_BASE)
	cp -u models/base/e5-small-q4.bin models/base/tokenizer.json $(PY_BASE)/

## The package's tests (against target/debug/calmline, built by cargo test) and the Spark job in
## local mode. The wheel is built with the dev profile (dependencies and calmline optimised, as
## for the tests), so it reuses cargo test's build.
python-test: setup $(PY_VENV)/.installed $(PY_MODEL)/.staged $(JAVA)
	rm -rf target/wheels-dev
	$(PY_VENV)/bin/maturin build --quiet --profile dev --manifest-path python/Cargo.toml --out target/wheels-dev
	$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels-dev/calmline-*.whl
	CALMLINE_BIN=target/debug/calmline $(PY_VENV)/bin/python -m pytest -q python/tests

## Debian's Chromium and the npm lockfile of the console's browser test (tests/console/).
CONSOLE_E2E = tests/console/node_modules/.installed
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core

$(CONSOLE_E2E): tests/console/package-lock.json
	npm ci --prefix tests/console --no-audit --no-fund
	@touch $@

## Google's Node.js API client, pointed at the Perspective drop-in by tests/it/perspective.rs.
PERSPECTIVE_NODE = tests/perspective/node_modules/.installed
$(PERSPECTIVE_NODE): tests/perspective/package-lock.json
	npm ci --prefix tests/perspective --no-audit --no-fund
	@touch $@

## Build and run the service on the default model: gRPC on 127.0.0.1:50051, metrics on
## 127.0.0.1:9464 (override with CALMLINE_LISTEN / CALMLINE_METRICS_LISTEN). Ctrl-C drains and stops.
run: setup
	$(CARGO) build --release
	$(CALMLINE) serve

## The service with the agent console: open http://127.0.0.1:50051/console in a browser.
console: setup
	$(CARGO) build --release
	$(CALMLINE) serve --console

## A short demo of `calmline analyze`, readable and as JSON lines.
demo: setup
	$(CARGO) build --release
	$(CALMLINE) analyze "This is the third time I'm calling, and the router STILL doesn't work!"
	@printf '%s\n' \
	  '{"id": "en-1", "text": "Thank you so much, that fixed it."}' \
	  '{"id": "hu-1", "text": "Ez teljesen elfogadhatatlan, már harmadszor hívom önöket!"}' \
	  '{"id": "he-1", "text": "אתה מטומטם לגמרי, תעביר אותי למישהו אחר"}' \
	  '{"id": "de-1", "text": "Ich warte seit zwei Wochen auf eine Antwort, das ist eine Frechheit."}' \
	  | $(CALMLINE) analyze --jsonl

## Run every test against the real model (and the Python and Node clients, the console in Chromium,
## the trainer's tests, the Python package and its Spark job, and the deployment files' checks).
## What the tests need is made first, all at once: on a fresh machine the installs wait on the
## network while cargo compiles the test binaries, instead of one after the other.
test:
	$(MAKE) --jobs=12 --output-sync=target test-needs
	$(TRAIN_VENV)/bin/python tools/training_overlap.py
	CALMLINE_CHROMIUM=$(CHROMIUM) $(CARGO) test --locked
	CALMLINE_BIN=target/debug/calmline $(TRAIN_VENV)/bin/python -m pytest -q trainer tools/test_training_overlap.py tools/test_annotation_agreement.py tools/test_replay_judgement.py tools/test_label_cues.py
	$(MAKE) python-test
	./deploy/validate.sh

TEST_NEEDS = setup test-build $(INTEROP_VENV)/.installed $(CHROMIUM) $(CONSOLE_E2E) $(PERSPECTIVE_NODE) $(TRAIN_VENV)/.installed \
  $(PY_VENV)/.installed $(PY_MODEL)/.staged $(JAVA) deploy-tools
.PHONY: test-needs test-build deploy-tools
test-needs: $(TEST_NEEDS)

## The test binaries. Cargo is kept off make's jobserver: it would otherwise compile on the one
## job slot left over by the installs running beside it.
test-build:
	env -u MAKEFLAGS -u MFLAGS $(CARGO) test --locked --no-run

deploy-tools:
	./deploy/validate.sh --install-only

## Retrain the frozen-encoder baseline head (models/baseline/) from ../shared/data (features cached in models/cache/).
train: setup
	$(CARGO) run --release -- train --models models/baseline --base models/base

## Fine-tune adapters and head (trainer/finetune.py) on the exported examples, then fit the final
## head and per-language thresholds on the adapted encoder. FINETUNE_ARGS go to the trainer (e.g.
## "--epochs 2 --first-layer 4"; add --resume to continue a stopped run); DATA_ARGS to the export.
FINETUNE_OUT ?= models/finetuned
FINETUNE_ARGS ?= --epochs 1 --repeat calmline_indomain=3 --repeat calmline_behaviour=3
DATA_ARGS ?= --cap-train 2500
finetune: setup $(TRAIN_VENV)/.installed
	$(CARGO) build --release
	mkdir -p $(FINETUNE_OUT)
	$(CALMLINE) export-examples $(DATA_ARGS) --out $(FINETUNE_OUT)/examples.jsonl
	$(TRAIN_VENV)/bin/python trainer/finetune.py --examples $(FINETUNE_OUT)/examples.jsonl --base models/base \
	  --init-head models/baseline --out $(FINETUNE_OUT) $(FINETUNE_ARGS)
	$(CALMLINE) train --models $(FINETUNE_OUT) --base models/base --adapters $(FINETUNE_OUT) $(DATA_ARGS) --project-weight 10

## Regenerate the held-out test numbers of the model card.
eval: setup
	$(CARGO) run --release -- eval --precision f32

## The behaviour suite, the gold conversations and the neutral flag rates (models/eval-judgement.json).
judgement: setup
	$(CARGO) run --release -- eval-judgement --precision f32 > models/eval-judgement.md

## Make an experiment the default: its head and adapters (`calmline train --adapters` writes both
## into the experiment's folder) overwrite models/head.* and models/adapters.*, then the span head
## is retrained and the served reports regenerated: the public test splits and what users see, in
## f32 and int8 (models/eval-*); agent conduct is printed into the experiment's folder
## (eval-conduct*.md) for docs/AGENT-CONDUCT.md. E.g. `make promote
## EXPERIMENT=models/experiments/judgement-27`. Then update the floors in tests/it/behaviour.rs and
## conduct.rs and the model card's default section by hand. To undo a trial: `git checkout --
## models/adapters.* models/head.* models/span-head.json models/eval-*`.
PROMOTED = $(EXPERIMENT)/head.json $(EXPERIMENT)/head.safetensors $(EXPERIMENT)/adapters.json $(EXPERIMENT)/adapters.safetensors
promote:
	@[ -n "$(EXPERIMENT)" ] || { echo "usage: make promote EXPERIMENT=DIR (a folder written by calmline train --adapters)" >&2; exit 2; }
	@for f in $(PROMOTED); do [ -f "$$f" ] || { echo "promote: $$f is missing" >&2; exit 2; }; done
	@./models/fetch.sh
	$(CARGO) build --release
	cp $(PROMOTED) models/
	$(CALMLINE) train-spans --models models --posts 8000 --hidden 128 --precision f32
	$(CALMLINE) eval --models models --precision f32 > /dev/null
	$(CALMLINE) eval --models models --precision int8 --out models/eval-test-int8.json > /dev/null
	$(CALMLINE) eval-judgement --models models --precision f32 > models/eval-judgement.md
	$(CALMLINE) eval-judgement --models models --precision int8 --out models/eval-judgement-int8.json > models/eval-judgement-int8.md
	$(CALMLINE) eval-conduct --models models --precision f32 > $(EXPERIMENT)/eval-conduct.md
	$(CALMLINE) eval-conduct --models models --precision int8 > $(EXPERIMENT)/eval-conduct-int8.md

## Check the deployment files without a cluster or a container engine: deploy/kubernetes/ against
## the Kubernetes schemas, the manifests against the Dockerfile, and the Dockerfile with hadolint
## (deploy/validate.sh; its pinned tools go into .venv-deploy on the first run).
deploy-check:
	./deploy/validate.sh

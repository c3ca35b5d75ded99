# The two commands: `make run` and `make test`. Both fetch the model files first when missing.
CARGO ?= cargo
CALMLINE = ./target/release/calmline

.PHONY: setup run test train eval demo

## Fetch and verify the encoder blob and tokenizer into models/base/ (skipped when present).
setup:
	@./models/fetch.sh

## Build and run calmline's main job on the default model (until the service lands: a demo of
## `calmline analyze`, readable and as JSON lines).
run: setup
	$(CARGO) build --release
	$(CALMLINE) analyze "This is the third time I'm calling, and the router STILL doesn't work!"
	@printf '%s\n' \
	  '{"id": "en-1", "text": "Thank you so much, that fixed it."}' \
	  '{"id": "hu-1", "text": "Ez teljesen elfogadhatatlan, már harmadszor hívom önöket!"}' \
	  '{"id": "he-1", "text": "אתה מטומטם לגמרי, תעביר אותי למישהו אחר"}' \
	  '{"id": "de-1", "text": "Ich warte seit zwei Wochen auf eine Antwort, das ist eine Frechheit."}' \
	  | $(CALMLINE) analyze --jsonl

## Run every test against the real model.
test: setup
	$(CARGO) test --locked

## Retrain the frozen-encoder head from ../shared/data (features cached in models/cache/).
train: setup
	$(CARGO) run --release -- train

## Regenerate the held-out test numbers of the model card.
eval: setup
	$(CARGO) run --release -- eval

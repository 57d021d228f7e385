# netfs build, test and packaging entry points. Everything that touches the
# machine (packages, dockerd, images) lives in scripts/; see docs/install.md.

CARGO ?= cargo
PLUGIN_NAME ?= netfs
export PLUGIN_NAME

# The integration tests need root, /dev/fuse, a running dockerd and the
# netfs-test-busybox image, all of which scripts/setup.sh provides, and the
# managed plugin TEST_PLUGIN built from the Dockerfile (scripts/test-plugin.sh),
# and TEST_PLUGIN-arm64, the same for arm64, which runs under QEMU's emulator.
# The fleet tests bring up scripts/fleet.sh themselves; `make test` takes the
# fleet down at the end, passed or failed.
TEST_PLUGIN ?= netfs-e2e
TEST_THREADS ?= 4
TEST_CMD ?= $(CARGO) test --all-targets -- --test-threads=$(TEST_THREADS)

# make push REGISTRY=host:port [PUSH_TAG=...]: the plugin to a registry.
# PLUGIN_ARCH=arm64: the arm64 plugin (make plugin, push; docs/install.md).
REGISTRY ?=
PUSH_TAG ?=
PLUGIN_ARCH ?= amd64

.PHONY: all build lint fmt-check clippy test unit-as-user test-plugin demo demo-plugin \
	plugin plugin-csi install push push-csi fleet-up fleet-down fuzz bench bench-rclone bench-trixie clean help

all: build

help:
	@echo "make build        cargo build --release (target/release/netfs)"
	@echo "make test         setup, fmt, clippy, test plugin, then $(TEST_CMD)"
	@echo "make unit-as-user cargo test --lib as an unprivileged user (part of make test)"
	@echo "make test-plugin  build the managed plugin $(TEST_PLUGIN) the tests use"
	@echo "make lint         cargo fmt --check and clippy -D warnings"
	@echo "make demo         run netfs as a host service against a local sshd"
	@echo "make demo-plugin  the same demo through the managed plugin"
	@echo "make plugin       build the managed plugin $(PLUGIN_NAME) (disabled)"
	@echo "make plugin-csi   build the CSI plugin netfs-csi for Swarm cluster volumes (disabled)"
	@echo "make install      build and enable the managed plugin"
	@echo "make push         push the plugin to REGISTRY as netfs:PUSH_TAG (scripts/push.sh)"
	@echo "make push-csi     push the CSI plugin to REGISTRY as netfs-csi:PUSH_TAG"
	@echo "make fleet-up     Docker 28 nodes in a swarm, a registry, an sshd (scripts/fleet.sh)"
	@echo "make fleet-down   remove the fleet (its cached image stays)"
	@echo "make fuzz|bench   run scripts/fuzz.sh, or scripts/bench.sh and scripts/bench-rclone.sh"
	@echo "make bench-rclone netfs vs rclone serve docker on S3 and WebDAV (scripts/bench-rclone.sh)"
	@echo "make bench-trixie parts 6 and 7 with Debian 13's OpenSSH 10 at both ends (scripts/bench-trixie.sh)"
	@echo "make clean        remove build output and the plugin work directory"

build:
	$(CARGO) build --release

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: fmt-check clippy

# The unit tests must pass as any user: `make test` runs them unprivileged
# first (scripts/unit-as-user.sh), then everything as root.
test: lint unit-as-user
	scripts/setup.sh
	NETFS_TEST_PLUGIN=$(TEST_PLUGIN) scripts/test-plugin.sh
	NETFS_TEST_PLUGIN=$(TEST_PLUGIN)-arm64 PLUGIN_ARCH=arm64 scripts/test-plugin.sh
	NETFS_TEST_PLUGIN=$(TEST_PLUGIN) NETFS_TEST_PLUGIN_ARM64=$(TEST_PLUGIN)-arm64 $(TEST_CMD); \
		rc=$$?; scripts/fleet.sh down; exit $$rc

unit-as-user:
	CARGO=$(CARGO) scripts/unit-as-user.sh

test-plugin:
	NETFS_TEST_PLUGIN=$(TEST_PLUGIN) scripts/test-plugin.sh
	NETFS_TEST_PLUGIN=$(TEST_PLUGIN)-arm64 PLUGIN_ARCH=arm64 scripts/test-plugin.sh

demo:
	scripts/demo.sh

demo-plugin:
	DEMO_MODE=plugin scripts/demo.sh

plugin:
	PLUGIN_ARCH=$(PLUGIN_ARCH) scripts/plugin.sh

plugin-csi:
	PLUGIN_NAME=netfs-csi PLUGIN_CONFIG=config-csi.json scripts/plugin.sh

install:
	PLUGIN_ENABLE=1 scripts/plugin.sh

push:
	REGISTRY=$(REGISTRY) PUSH_TAG=$(PUSH_TAG) PLUGIN_ARCH=$(PLUGIN_ARCH) scripts/push.sh

push-csi:
	REGISTRY=$(REGISTRY) PUSH_TAG=$(PUSH_TAG) PUSH_NAME=netfs-csi \
		PLUGIN_CONFIG=config-csi.json scripts/push.sh

fleet-up:
	scripts/fleet.sh up

fleet-down:
	scripts/fleet.sh down

fuzz:
	@if [ -x scripts/fuzz.sh ]; then scripts/fuzz.sh; \
	else echo "no fuzz harness yet (scripts/fuzz.sh)"; fi

bench:
	@if [ -x scripts/bench.sh ]; then scripts/setup.sh && scripts/bench.sh && scripts/bench-rclone.sh; \
	else echo "no benchmarks yet (scripts/bench.sh)"; fi

bench-rclone:
	scripts/setup.sh
	scripts/bench-rclone.sh

bench-trixie:
	scripts/setup.sh
	scripts/bench-trixie.sh

clean:
	$(CARGO) clean
	rm -rf .work

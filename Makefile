# kata-ts build, demo and test entry points. Run as root on Debian 12.
SHELL := /bin/bash
.DEFAULT_GOAL := demo

BUILD := build
APT_PACKAGES := qemu-system-x86 e2fsprogs busybox-static linux-source-6.1 bc flex bison \
	libelf-dev libssl-dev lz4 protobuf-compiler libprotobuf-dev gcc libc6-dev make python3 \
	curl xz-utils patch gperf pkg-config libcap-dev libseccomp-dev \
	containerd runc golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev \
	golang-github-containerd-ttrpc-dev golang-github-gogo-protobuf-dev golang-github-gogo-googleapis-dev \
	containernetworking-plugins slirp4netns mount procps iproute2 util-linux libvirt-clients libxml2-utils prometheus
AGENT_SRC := $(shell find agent/src common native -name '*.ts' 2>/dev/null)
ADDON := native/build/Release/kata_ts_native.node
KERNEL := $(BUILD)/vmlinux
CRUN := $(BUILD)/crun
ROOTFS := $(BUILD)/rootfs.img
AGENT_BUNDLE := $(BUILD)/agent/agent.cjs
SHIM_SRC := $(shell find shim/src common native -name '*.ts' 2>/dev/null)
SHIM_DIR := $(BUILD)/shim
RUNTIME_SHIM := $(SHIM_DIR)/shim.cjs $(SHIM_DIR)/containerd-shim-kata-ts-v2.cjs $(SHIM_DIR)/kata_ts_native.node \
	$(SHIM_DIR)/kata-ts.cjs $(SHIM_DIR)/cri-runtime-v1.json
# make install: one self-contained runtime folder, and its commands on PATH.
PREFIX ?= /opt/kata-ts
BINDIR ?= /usr/local/bin
BUSYBOX_ROOTFS := $(BUILD)/busybox-rootfs/.stamp
BUSYBOX_IMAGES := $(BUILD)/busybox-image.tar $(BUILD)/busybox-image-user.tar
PAUSE_IMAGE := $(BUILD)/pause-image.tar
CRI_SCHEMA := proto/gen/cri/runtime-v1.json

.PHONY: demo test bench soak deps apt npm native proto build images kernel crun rootfs lint typecheck unit hostile integration e2e clean install uninstall check-new-machine

## demo: install everything, build the images, boot a sandbox and run a command in it, then the same through containerd
demo: deps images build install
	node dist/shim/src/cli/kata-ts-run.js --rootfs $(BUILD)/busybox-rootfs -- /bin/sh -c 'echo "hello from $$(uname -n), kernel $$(uname -r)"'
	bash demo/ctr-run.sh .

## test: the whole suite (lint, type-check, unit, hostile agent, integration with real VMs, e2e with containerd and ctr)
test: deps images build lint typecheck unit hostile integration e2e

bench: deps images build
	node dist/bench/sandbox-boot.js
	node dist/bench/shim-vs-runc.js
	node dist/bench/cri-pods.js
	node dist/bench/ci-job.js
	node dist/bench/idle-memory.js

## soak: many sandboxes in a row, at once, with large outputs, and 20 idle side by side (not in CI; about 20 minutes under TCG)
soak: deps images build
	node dist/bench/soak.js

deps: apt npm native proto

# Debian's prometheus package starts a server on :9090 as it installs. The monitor test starts its
# own on 127.0.0.1, so a service that this install brought is stopped and disabled (one the host
# had before is left alone).
STOP_PROMETHEUS_SERVICE := { systemctl disable prometheus.service; \
	if [ -d /run/systemd/system ]; then systemctl stop prometheus.service; else invoke-rc.d prometheus stop; fi; } >/dev/null 2>&1 || true
apt: $(BUILD)/.apt-stamp
$(BUILD)/.apt-stamp: Makefile
	@mkdir -p $(BUILD)
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		had_prometheus=$$(dpkg -s prometheus >/dev/null 2>&1 && echo yes); \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES) && \
		if [ -z "$$had_prometheus" ]; then $(STOP_PROMETHEUS_SERVICE); fi; \
	fi
	@touch $@

npm: node_modules/.package-lock.json
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

native: $(ADDON)
$(ADDON): native/kata_ts_native.c native/binding.gyp node_modules/.package-lock.json
	npx node-gyp rebuild --directory native --loglevel=warn

proto: proto/gen/agent.ts proto/gen/containerd/containerd.js $(CRI_SCHEMA)
proto/gen/agent.ts: proto/agent.proto proto/generate.sh node_modules/.package-lock.json
	bash proto/generate.sh
proto/gen/containerd/containerd.js: proto/ttrpc.proto proto/generate-containerd.sh node_modules/.package-lock.json | $(BUILD)/.apt-stamp
	bash proto/generate-containerd.sh

# build/ is a runtime folder, laid out as an installed one (shim/src/containerd/shim-settings.ts):
# bin/ for what containerd runs, shim/ for the bundle, its loader and the addon, and beside them
# the guest kernel, the rootfs image and the default configuration.
# The CRI API the installed containerd serves, out of its binary (Debian packages no CRI .proto).
$(CRI_SCHEMA): proto/extract-cri.mjs node_modules/.package-lock.json | $(BUILD)/.apt-stamp
	@mkdir -p $(dir $@)
	node proto/extract-cri.mjs $$(command -v containerd) $@

build: proto $(BUILD)/bin/containerd-shim-kata-ts-v2 $(BUILD)/bin/kata-ts $(RUNTIME_SHIM) $(BUILD)/configuration.toml
	npx tsc -p tsconfig.build.json
	@# tsc emits only what it compiles; the protobufjs module is generated JavaScript.
	mkdir -p dist/proto/gen/containerd && cp proto/gen/containerd/containerd.js dist/proto/gen/containerd/

# containerd finds io.containerd.kata-ts.v2 as containerd-shim-kata-ts-v2 on its PATH.
# The wrapper names node and the shim by absolute path: containerd's PATH need not hold node.
#   $(call shim_wrapper,RUNTIME_FOLDER,OUT_FILE)
shim_wrapper = sed -e 's|@SHIM_JS@|$(1)/shim/containerd-shim-kata-ts-v2.cjs|' -e "s|@NODE@|$$(command -v node)|" \
	shim/bin/containerd-shim-kata-ts-v2.sh > $(2) && chmod 0755 $(2)
$(BUILD)/bin/containerd-shim-kata-ts-v2: shim/bin/containerd-shim-kata-ts-v2.sh Makefile
	@mkdir -p $(dir $@)
	$(call shim_wrapper,$(CURDIR)/$(BUILD),$@)
kata_ts_wrapper = sed -e 's|@KATA_TS_JS@|$(1)/shim/kata-ts.cjs|' -e "s|@NODE@|$$(command -v node)|" shim/bin/kata-ts.sh > $(2) && chmod 0755 $(2)
$(BUILD)/bin/kata-ts: shim/bin/kata-ts.sh Makefile
	@mkdir -p $(dir $@)
	$(call kata_ts_wrapper,$(CURDIR)/$(BUILD),$@)
$(BUILD)/configuration.toml: shim/configuration.toml
	cp $< $@
$(SHIM_DIR)/kata_ts_native.node: $(ADDON)
	@mkdir -p $(dir $@)
	cp $< $@

# The shim containerd runs: one CommonJS bundle, started by a loader that keeps its V8 code cache.
# One file to read and compile instead of an ES module graph: about 25 ms less before each sandbox boots.
$(SHIM_DIR)/shim.cjs: $(SHIM_SRC) proto/gen/agent.ts proto/gen/containerd/containerd.js node_modules/.package-lock.json
	@mkdir -p $(dir $@)
	npx esbuild shim/src/cli/containerd-shim-kata-ts-v2.ts --bundle --platform=node --target=node20 --format=cjs \
		--log-level=warning --log-override:empty-import-meta=silent --outfile=$@
# The operator's command, bundled the same way; the CRI schema its cri subcommand loads sits beside it.
# ws's optional native helpers are not used.
$(SHIM_DIR)/kata-ts.cjs: $(SHIM_SRC) $(CRI_SCHEMA) node_modules/.package-lock.json
	@mkdir -p $(dir $@)
	npx esbuild shim/src/cli/kata-ts.ts --bundle --platform=node --target=node20 --format=cjs --log-level=warning \
		--log-override:empty-import-meta=silent --external:bufferutil --external:utf-8-validate --outfile=$@
$(SHIM_DIR)/cri-runtime-v1.json: $(CRI_SCHEMA)
	@mkdir -p $(dir $@)
	cp $< $@
$(SHIM_DIR)/containerd-shim-kata-ts-v2.cjs: shim/loader/containerd-shim-kata-ts-v2.cjs
	@mkdir -p $(dir $@)
	cp $< $@

## install: the runtime under PREFIX (/opt/kata-ts), and containerd-shim-kata-ts-v2 and kata-ts on PATH
## (BINDIR, /usr/local/bin) from there; the installed runtime needs nothing from this checkout
install: build kernel rootfs $(BUSYBOX_ROOTFS)
	install -d -m 0755 $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/shim $(DESTDIR)$(BINDIR)
	install -m 0644 $(SHIM_DIR)/shim.cjs $(SHIM_DIR)/containerd-shim-kata-ts-v2.cjs $(SHIM_DIR)/kata-ts.cjs $(SHIM_DIR)/cri-runtime-v1.json \
		$(DESTDIR)$(PREFIX)/shim/
	install -m 0755 $(SHIM_DIR)/kata_ts_native.node $(DESTDIR)$(PREFIX)/shim/
	install -m 0644 $(KERNEL) $(KERNEL).key $(BUILD)/vmlinux.config $(ROOTFS) $(ROOTFS).key shim/configuration.toml $(DESTDIR)$(PREFIX)/
	rm -rf $(DESTDIR)$(PREFIX)/busybox-rootfs && cp -a $(BUILD)/busybox-rootfs $(DESTDIR)$(PREFIX)/ && rm $(DESTDIR)$(PREFIX)/busybox-rootfs/.stamp
	$(call shim_wrapper,$(PREFIX),$(DESTDIR)$(PREFIX)/bin/containerd-shim-kata-ts-v2)
	$(call kata_ts_wrapper,$(PREFIX),$(DESTDIR)$(PREFIX)/bin/kata-ts)
	ln -sfn $(PREFIX)/bin/containerd-shim-kata-ts-v2 $(DESTDIR)$(BINDIR)/containerd-shim-kata-ts-v2
	ln -sfn $(PREFIX)/bin/kata-ts $(DESTDIR)$(BINDIR)/kata-ts

## uninstall: remove what make install put there (an /etc/kata-ts configuration is the host's and stays)
uninstall:
	for cmd in containerd-shim-kata-ts-v2 kata-ts; do \
		if [ "$$(readlink $(DESTDIR)$(BINDIR)/$$cmd)" = $(PREFIX)/bin/$$cmd ]; then rm -f $(DESTDIR)$(BINDIR)/$$cmd; fi; \
	done
	rm -rf $(DESTDIR)$(PREFIX)/shim $(DESTDIR)$(PREFIX)/busybox-rootfs
	rm -f $(DESTDIR)$(PREFIX)/bin/containerd-shim-kata-ts-v2 $(DESTDIR)$(PREFIX)/bin/kata-ts \
		$(addprefix $(DESTDIR)$(PREFIX)/,vmlinux vmlinux.key vmlinux.config rootfs.img rootfs.img.key configuration.toml)
	rmdir --ignore-fail-on-non-empty $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX) 2>/dev/null || true

images: kernel crun rootfs $(BUSYBOX_ROOTFS) $(BUSYBOX_IMAGES) $(PAUSE_IMAGE)

kernel: $(KERNEL)
$(KERNEL): images/kernel/build.sh images/kernel/config-fragment.txt | $(BUILD)/.apt-stamp
	bash images/kernel/build.sh $@

# The guest's crun: Debian's crun source, statically linked (cached like the kernel).
crun: $(CRUN)
$(CRUN): images/crun/build.sh | $(BUILD)/.apt-stamp
	bash images/crun/build.sh $@

$(AGENT_BUNDLE): $(AGENT_SRC) proto/gen/agent.ts node_modules/.package-lock.json
	@mkdir -p $(dir $@)
	@# CommonJS and minified: under TCG, Node's ESM loader and parsing a large bundle cost seconds.
	npx esbuild agent/src/main.ts --bundle --platform=node --target=node20 --format=cjs --minify --log-level=warning \
		--log-override:empty-import-meta=silent --banner:js="globalThis.__kataTsLoadedAt = performance.now();" \
		--outfile=$@

$(BUILD)/tools/write-pfn-info.mjs: images/rootfs/write-pfn-info.ts images/rootfs/nvdimm-pfn.ts node_modules/.package-lock.json
	npx esbuild images/rootfs/write-pfn-info.ts --bundle --platform=node --format=esm --log-level=warning --outfile=$@

rootfs: $(ROOTFS)
$(ROOTFS): images/rootfs/build.sh images/rootfs/init.c agent/loader/agent-loader.cjs $(AGENT_BUNDLE) $(ADDON) $(CRUN) $(BUILD)/tools/write-pfn-info.mjs | $(BUILD)/.apt-stamp
	bash images/rootfs/build.sh $@ $(AGENT_BUNDLE) $(ADDON) $(CRUN) $(BUILD)/tools/write-pfn-info.mjs

$(BUSYBOX_ROOTFS): images/oci/build-busybox-rootfs.sh | $(BUILD)/.apt-stamp
	bash images/oci/build-busybox-rootfs.sh $(BUILD)/busybox-rootfs
	@touch $@

# OCI image tarballs for `ctr image import` (no registry); one script run writes both.
$(BUSYBOX_IMAGES) &: images/oci/build-busybox-image.sh images/oci/oci-image.sh $(BUSYBOX_ROOTFS)
	bash images/oci/build-busybox-image.sh $(BUILD)/busybox-image.tar $(BUILD)/busybox-rootfs

# The pod sandbox image (a static pause), for CRI pods without a registry.
$(PAUSE_IMAGE): images/oci/build-pause-image.sh images/oci/oci-image.sh images/oci/pause.c | $(BUILD)/.apt-stamp
	bash images/oci/build-pause-image.sh $@

lint: npm proto
	npx eslint .

typecheck: npm proto
	npx tsc -p tsconfig.json --noEmit

unit: npm proto
	npx vitest run --project unit --reporter=default --reporter=json --outputFile.json=$(BUILD)/test-results/unit.json

## hostile: a scripted hostile agent behind a fake VMM (no VM boots; the addon mounts the sandbox's share)
hostile: npm proto native
	npx vitest run --project hostile --reporter=default --reporter=json --outputFile.json=$(BUILD)/test-results/hostile.json

integration: images build
	npx vitest run --project integration --reporter=default --reporter=json --outputFile.json=$(BUILD)/test-results/integration.json

## e2e: a private containerd driven by the real ctr (runc baseline; kata-ts once the shim lands)
e2e: images build
	npx vitest run --project e2e --reporter=default --reporter=json --outputFile.json=$(BUILD)/test-results/e2e.json

## check-new-machine: make demo in a fresh Debian 12 root that holds only what a new machine has (before landing)
# Only this check needs it; it is not part of a build or of the tests.
CHECK_PACKAGES := mmdebstrap
check-new-machine:
	@dpkg -s $(CHECK_PACKAGES) >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(CHECK_PACKAGES)
	bash test/new-machine/run.sh demo

clean:
	rm -rf $(BUILD) dist native/build proto/gen

# The two commands a new user types: `make run` and `make test`.
.PHONY: run build test test-sanitizers bench deps deps-run deps-test deps-bench clients clean format

BUILD_DIR := build
NPM_CLIENTS := tests/clients/node
# Flags for `nimbus serve`: make run ARGS="--region ap-northeast-2"
ARGS ?=

run: deps-run build
	./$(BUILD_DIR)/nimbus serve $(ARGS)

build: deps
	cmake --preset release
	cmake --build --preset release

deps:
	scripts/install-deps build

# After deps, so that two apt-get runs never race for the dpkg lock under `make -j`.
# The clients the README's quickstart and tutorial use (mosquitto-clients, awscli, paho, ...).
deps-run: deps
	scripts/install-deps run

deps-test: deps
	scripts/install-deps test

# bench/run's peers: the test set plus nats-server (JetStream, for the Pub/Sub rows).
deps-bench: deps
	scripts/install-deps bench

# npm test clients (MQTT.js, playwright-core, ...), pinned by package-lock.json: installed again
# only when the lock changes (the stamp is inside node_modules, which npm ci replaces).
clients: deps-test $(NPM_CLIENTS)/node_modules/.nimbus-installed

$(NPM_CLIENTS)/node_modules/.nimbus-installed: $(NPM_CLIENTS)/package-lock.json
	cd $(NPM_CLIENTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: deps-test clients build
	ctest --test-dir $(BUILD_DIR) --output-on-failure --timeout 600 -j2
	$(MAKE) test-sanitizers

# The unit and real-client suites again against an ASan + UBSan build (build-dev/), but the
# browser's (label browser: Chromium drives pages; the server's side of them is in the others).
test-sanitizers: deps-test clients
	cmake --preset dev -DNIMBUS_BUILD_FUZZ=OFF -DNIMBUS_BUILD_BENCH=OFF
	cmake --build --preset dev
	ctest --test-dir build-dev --output-on-failure --timeout 900 -j2 -LE browser

bench: deps-bench clients build
	bench/run

format:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) build-dev build-tsan

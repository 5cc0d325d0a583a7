# Two commands matter: `make up` and `make test`. Both build the virtualenv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv s3-clients up test lint typecheck unit unit-pure bench bench-quick proto clean

venv: $(STAMP)

# The engine's C accelerator (src/atoll/engine/_native.c) needs a compiler and the
# Python headers; pyenv and python.org builds ship the headers, Debian's python3
# needs python3-dev. Without them the install still succeeds (the extension is
# optional) but tests/property/test_native_matches_python.py fails, so we install them.
$(STAMP): pyproject.toml setup.py src/atoll/engine/_native.c
	@$(PY) -m venv $(VENV) 2>/dev/null || { apt-get update && apt-get install -y python3-venv python3-dev && $(PY) -m venv $(VENV); }
	@command -v gcc >/dev/null && $(PY) -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
		|| { apt-get update && apt-get install -y gcc python3-dev; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -c 'import atoll.engine._native' || { echo "atoll: the C accelerator did not build" >&2; exit 1; }
	@touch $(STAMP)

# A local 3-node cluster in .atoll/ (configs, data, logs, cluster.json) until Ctrl-C,
# with node 1's S3 gateway on port 9000; run again to restart the same cluster with
# its data.
up: venv
	$(BIN)/atoll dev --dir .atoll --nodes 3 --devices-per-node 2 --s3-port 9000

# The real S3 clients that tests/integration/test_s3_clients.py drives, as Debian
# packages. The tests run them by their /usr/bin paths: an `aws` found first on PATH
# (a pyenv shim, say) need not be the AWS CLI v2.
s3-clients:
	@command -v /usr/bin/aws >/dev/null && command -v /usr/bin/rclone >/dev/null \
		&& command -v /usr/bin/s3cmd >/dev/null \
		|| { apt-get update && apt-get install -y awscli rclone s3cmd; }

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

unit: venv s3-clients
	$(BIN)/pytest -q

# The engine's pure-Python paths (used where the C accelerator is absent).
unit-pure: venv
	ATOLL_NO_NATIVE=1 $(BIN)/pytest -q tests/unit/engine tests/faults/test_corruption.py

test: lint typecheck unit unit-pure

bench: venv
	$(BIN)/python bench/engine.py

# The engine benchmark in quick mode (< 2 min): writes bench/results/engine-quick.md.
bench-quick: venv
	$(BIN)/atoll engine bench --quick

# Regenerate src/atoll/proto/ from proto/atoll/*.proto (commit the result; the unit
# tests fail while it is stale). See proto/generate.py for the import layout.
proto: venv
	$(BIN)/python proto/generate.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info src/atoll/engine/*.so

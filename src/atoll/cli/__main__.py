"""`python -m atoll.cli`: the `atoll` command without its console script; `atoll dev`
starts its node processes this way, with the supervisor's own interpreter."""

from __future__ import annotations

from atoll.cli.main import main

if __name__ == "__main__":
    main(prog_name="atoll")

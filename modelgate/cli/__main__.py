"""``python -m modelgate.cli``: the same as the ``modelgate`` console script."""

from modelgate.cli.main import main

if __name__ == "__main__":
    main(prog_name="modelgate")

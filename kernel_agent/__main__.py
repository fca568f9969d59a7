"""`python -m kernel_agent ...` is `flow agent ...` (what `flow up` starts in the background)."""

from elasticcode.cli import main

if __name__ == "__main__":
    import sys

    main(["agent", *sys.argv[1:]])

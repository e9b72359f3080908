"""Run the benchmark and keep its figures: ``python benchmarks/run.py``.

Same as ``minilenet bench --json benchmarks/results.json``; docs/performance.md
quotes the table this prints.
"""
import os
import sys

from minilenet.cli import main

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.exit(main(["bench", "--json", os.path.join(here, "results.json"), *sys.argv[1:]]))

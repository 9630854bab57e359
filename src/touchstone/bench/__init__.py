"""The one bench harness (``touchstone.bench.harness``): every bench under ``bench/``, the
API bench and the chaos suite measure and write through it, so their figures compare."""

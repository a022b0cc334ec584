"""The parts of `benchmarks/quality.py`, the retrieval-quality benchmark.

    settings  the benchmark's defaults per dataset, flags -> config, run list
    arms      the methods compared (`ARMS`, `PAIRS`) and their compiled models
    data      splits, transforms and the fixed evaluation subsets
    runs      one (arm, seed) run: training, epoch selection, test metrics
    results   the JSON file: resume, provenance of every command that adds runs
    tables    statistics over seeds and the markdown tables
    report    compare.md / sweep.md and the doc's marker sections
    figures   the Recall@1 / MAP@R pictures

The modules import `benchmarks/stats.py` and `benchmarks/provenance.py` as
top-level modules: `benchmarks/` is on `sys.path`, as for every benchmark.
"""

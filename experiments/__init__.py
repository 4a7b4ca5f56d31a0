"""The paper's experiments, run by this repository's code (``python -m experiments.run NAME``).

Each experiment is a list of training runs (:class:`experiments.runner.Run`). The runner trains each
run with :func:`capsedu.train.fit`, resumes it after an interruption, and writes one JSON record per
finished run to ``experiments/results/<experiment>/<scale>/<run>.json`` (the format: :mod:`capsedu.records`);
the book's chapters 7 and 8 read those records. See ``experiments/README.md``.
"""

"""Side-by-side benchmarks of assimilax against peer libraries (DAPPER, dynamax, filterpy).

Peer packages are pinned in ``benchmarks/requirements.txt`` and installed in a separate venv;
``python -m benchmarks.peers [--quick]`` runs them. Results: ``benchmarks/results/peers.json``
and ``benchmarks/RESULTS.md``.
"""

"""MQ Lab's performance harness: ``python -m benchmarks.run`` (full) or ``--quick`` (CI).

The reference programs the project is compared with live in ``benchmarks.references`` and run
in the same process and the same run as the project's code, so both see the same machine load.
"""

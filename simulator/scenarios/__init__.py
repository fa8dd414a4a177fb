"""MQ Lab's scenarios: each module holds a pydantic config, a ``run_*`` function and its result.

``simulator.scenarios.registry`` lists them for the command line.
"""

"""MQ Lab: a flash-sale gift event modelled with SimPy, and the same flow on real services.

Importing this package connects to nothing; real services are reached only through
``real_adapters`` when asked.
"""

__version__ = "0.1.0"

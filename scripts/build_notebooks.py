#!/usr/bin/env python3
"""Rebuild and re-execute the lesson notebooks in place (same as ``python -m simulator.lessons.build``)."""

import sys

from simulator.lessons.build import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

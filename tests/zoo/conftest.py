"""Zoo storage tests: this folder on sys.path, so writer subprocesses can import the test helpers."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

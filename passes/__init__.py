"""Compiler passes, one per file, run in order by :func:`gmnfx.pipeline.run_pipeline`."""

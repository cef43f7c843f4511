"""Runs on disk: what identifies a run, its folder (files written and read in one module), the
locks that let processes share a sweep, the run of one configuration, and reading sweeps."""

"""``segact-report``: a sweep's run folders -> tables, paired statistics, claims, plots and
report.md; also the end-of-sweep callback of ``segact-train -m``."""

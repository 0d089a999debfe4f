"""Analysis of sweep results: Gaussian-process surfaces, best-alpha posteriors, figures, tables.

Reads `results/<sweep>/*.parquet` only: no torch, Lightning or Ray, so figures and tables can
be regenerated on any machine with pandas, scikit-learn and matplotlib.
"""

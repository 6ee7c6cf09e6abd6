"""Task functions: each takes settings and plain values and returns plain values.

The same function runs under Airflow, under ``mlops pipeline run`` and in tests; nothing here
imports Airflow.
"""

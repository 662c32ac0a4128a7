"""Deployment: the local stack (`stack.py`, Kafka + Redis as plain processes) and the one process
start/stop helper (`procs.py`); stdlib only, since `stack.py` runs before `.venv` exists."""

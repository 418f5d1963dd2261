"""A deterministic simulation of the pipeline (see ``tests/sim/world.py``); docs in ``tests/reliability/test_state_machine.py``."""

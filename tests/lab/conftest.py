# Fixtures for the lab's self-tests (python3 -m pytest tests/lab); see lab/fixtures.py.
from lab.fixtures import *  # noqa: F401,F403

import sys
from pathlib import Path

# The reference saver (tests/npy_saver.py) is shared by the task and fault tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

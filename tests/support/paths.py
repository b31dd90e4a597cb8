"""Where things are: the repository root (subprocesses run there) and the shipped data set."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "amazon18-industrial"

import sys
from pathlib import Path

# tests import helpers from each other (tests/test_dna.py's DNAs, ...)
sys.path.insert(0, str(Path(__file__).parent))

"""conf's tests load a small config of their own (thumbnailer.py), not the SMS platform's."""

import sys
from pathlib import Path

# --import-mode=importlib keeps test folders off sys.path.
sys.path.insert(0, str(Path(__file__).parent))

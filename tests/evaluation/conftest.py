import os
import sys

# The retrieval tests import the brute-force reference beside them.
sys.path.insert(0, os.path.dirname(__file__))

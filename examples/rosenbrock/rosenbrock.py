"""The Rosenbrock function f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, minimum 0 at (1, 1).

A job script without the decorator: it reads the job config itself (the last argument) and
prints the result line.
"""

import json
import sys

from aup import print_result

config = json.load(open(sys.argv[-1]))
x, y = config["x"], config["y"]
print_result((1 - x) ** 2 + 100 * (y - x * x) ** 2)

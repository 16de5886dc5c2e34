"""Tune an SVM on scikit-learn's bundled digits dataset (no download needed).

Run with:  aup run examples/digits_svm/experiment.json
The job config (C, gamma) arrives as the last argument; the 3-fold cross-validated accuracy is
reported with aup.print_result.
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC

import aup


@aup.aup_args
def main(C: float, gamma: float) -> float:
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return float(cross_val_score(SVC(C=C, gamma=gamma), X, y, cv=3).mean())


if __name__ == "__main__":
    main()

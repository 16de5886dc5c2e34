"""Train scikit-learn's SGDClassifier on the bundled digits data for a budget of epochs.

Run with:  aup run examples/multifidelity/experiment_hyperband.json
      or:  aup run examples/multifidelity/experiment_bohb.json
The job config (the parameters plus ``n_iterations``, the budget the multi-fidelity proposer
gives this job) arrives as the last argument. hyperband budgets are whole numbers of epochs;
bohb budgets lie between min_budget and max_budget and are floats unless whole (this example's
1, 3, 9 and 27 arrive as ints), so the script rounds them in case they are not. The
validation accuracy is reported with ``#Auptimizer:`` lines (maximized: ``"target": "max"``).
"""

import json
import sys
import warnings

from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

config = json.load(open(sys.argv[-1]))
epochs = max(1, round(float(config["n_iterations"])))

X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.33, random_state=0,
                                                  stratify=y)
scaler = StandardScaler().fit(X_train)
X_train, X_val = scaler.transform(X_train), scaler.transform(X_val)
clf = SGDClassifier(alpha=config["alpha"], eta0=config["eta0"],
                    learning_rate=config["learning_rate"], loss=config["loss"], random_state=0,
                    max_iter=epochs, tol=None)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ConvergenceWarning: we stop on purpose after `epochs`
    clf.fit(X_train, y_train)
print(f"#Auptimizer:{clf.score(X_val, y_val)}")

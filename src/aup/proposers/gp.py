"""Gaussian-process building blocks of the ``spearmint`` proposer.

* :class:`Encoder` turns parameter assignments into GP feature vectors and back: floats keep
  their unit-interval value (log-warped when ``log``), integers are snapped to the centre of
  their slice of the unit interval (so the GP only ever sees values that exist), choices are
  one-hot encoded, constants are left out. Treating discrete inputs by evaluating the model on
  the *snapped* point follows Garrido-Merchan and Hernandez-Lobato 2020, "Dealing with
  categorical and integer-valued variables in Bayesian optimization with Gaussian processes".
* :class:`MaternGP` is an exact GP with a Matern 5/2 kernel with one length scale per feature
  (ARD), an amplitude and a noise term, fitted by maximizing the log marginal likelihood plus
  weak log priors (:func:`neg_log_prior`) with L-BFGS-B (warm started from the previous fit,
  plus random restarts when asked).
* :func:`log_expected_improvement` computes log EI without underflow, following Ament et al.
  2023, "Unexpected Improvements to Expected Improvement for Bayesian Optimization".
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from aup.space import ChoiceParam, IntParam, SearchSpace

#: Below this z the asymptotic form of log h(z) is used (see :func:`log_h`).
_Z_ASYMPTOTIC = -1e4
_LOG_2PI_HALF = 0.5 * math.log(2 * math.pi)
_LOG_PI_2_HALF = 0.5 * math.log(math.pi / 2)


class Encoder:
    """Map assignments of a search space to GP features in ``[0, 1]^dim`` and back.

    "Param-unit" vectors have one coordinate in ``[0, 1]`` per non-constant parameter (the
    space's ``to_unit`` encoding: choice ``i`` of ``k`` is the slice ``[i/k, (i+1)/k)``).
    Features have one column per float/int parameter and ``k`` one-hot columns per choice.

    Args:
        space: the search space.

    Attributes:
        params: the non-constant parameters, in space order.
        dim: number of feature columns.
        n_params: number of param-unit coordinates (``len(params)``).
        numeric: indices (into ``params``) of float and int parameters.
    """

    def __init__(self, space: SearchSpace):
        self.space = space
        self.params = [p for p in space if not p.is_constant]
        self.n_params = len(self.params)
        self._cols: list[slice] = []
        col = 0
        for p in self.params:
            width = len(p.choices) if isinstance(p, ChoiceParam) else 1
            self._cols.append(slice(col, col + width))
            col += width
        self.dim = col
        self.numeric = [i for i, p in enumerate(self.params) if not isinstance(p, ChoiceParam)]

    def encode(self, params: dict[str, Any]) -> np.ndarray:
        """Features of one assignment, shape ``(dim,)``."""
        x = np.zeros(self.dim)
        for p, cols in zip(self.params, self._cols, strict=True):
            if isinstance(p, ChoiceParam):
                x[cols.start + p.index(params[p.name])] = 1.0
            else:
                x[cols.start] = p.to_unit(params[p.name])
        return x

    def to_param_unit(self, params: dict[str, Any]) -> np.ndarray:
        """Param-unit vector of one assignment, shape ``(n_params,)``."""
        return np.array([p.to_unit(params[p.name]) for p in self.params], dtype=float)

    def features(self, u: np.ndarray, snap: bool = True) -> np.ndarray:
        """Features of param-unit points.

        Args:
            u: array ``(m, n_params)`` in ``[0, 1]``.
            snap: round integers to the centre of their slice (False: keep the continuous
                relaxation, used during local refinement).

        Returns:
            array ``(m, dim)``.
        """
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        out = np.zeros((u.shape[0], self.dim))
        for j, (p, cols) in enumerate(zip(self.params, self._cols, strict=True)):
            if isinstance(p, ChoiceParam):
                k = len(p.choices)
                idx = np.minimum(k - 1, (u[:, j] * k).astype(int))
                out[np.arange(u.shape[0]), cols.start + idx] = 1.0
            elif isinstance(p, IntParam) and snap:
                out[:, cols.start] = _snap_int(p, u[:, j])
            else:
                out[:, cols.start] = u[:, j]
        return out

    def decode(self, u: np.ndarray) -> dict[str, Any]:
        """Assignment (plain JSON values, constants included) of one param-unit point."""
        values: dict[str, Any] = {}
        it = iter(np.asarray(u, dtype=float).tolist())
        for p in self.space:
            if p.is_constant:
                values[p.name] = _plain(p.from_unit(0.5))
            else:
                values[p.name] = _plain(p.from_unit(next(it)))
        return values


def _snap_int(p: IntParam, u: np.ndarray) -> np.ndarray:
    """Vectorized ``p.to_unit(p.from_unit(u))``: the centre of each integer's slice."""
    lo, hi = p._edges()
    v = lo + u * (hi - lo)
    if p.log:
        v = np.exp(v)
    k = np.clip(np.round(v), p.low, p.high)
    if p.log:
        k = np.log(k)
    return np.clip((k - lo) / (hi - lo), 0.0, 1.0)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | dict):
        return copy.deepcopy(value)
    return value


# -- the GP ----------------------------------------------------------------------------------
#: Bounds of the kernel hyperparameters (outputs are standardized, inputs in [0, 1]).
AMPLITUDE_BOUNDS = (1e-2, 1e2)
LENGTH_SCALE_BOUNDS = (1e-2, 1e2)
NOISE_BOUNDS = (1e-6, 1e-1)
_SQRT5 = math.sqrt(5.0)
_JITTER = 1e-8
#: Restarts of the likelihood maximization are screened on at most this many points, with at
#: most this many L-BFGS-B iterations each.
_SCREEN_POINTS = 50
_SCREEN_ITERS = 20
#: Relative tolerance of the likelihood maximization (the likelihood is ~n nats; finer
#: digits do not change a proposal).
_FTOL = 1e-5


def default_theta(dim: int) -> np.ndarray:
    """Starting log-hyperparameters ``[log amplitude, log length scales..., log noise]``."""
    return np.log(np.concatenate([[1.0], np.full(dim, 0.5), [1e-3]]))


def theta_bounds(dim: int) -> np.ndarray:
    """Bounds of the log-hyperparameters, shape ``(dim + 2, 2)``."""
    return np.log(np.array([AMPLITUDE_BOUNDS] + [LENGTH_SCALE_BOUNDS] * dim + [NOISE_BOUNDS]))


def _sq_dist(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``x`` and ``z`` (clipped at 0)."""
    d = x @ z.T
    d *= -2.0
    d += (x * x).sum(1)[:, None]
    d += (z * z).sum(1)[None, :]
    return np.maximum(d, 0.0, out=d)


def matern52(x: np.ndarray, z: np.ndarray, amplitude: float, length_scale: np.ndarray
             ) -> np.ndarray:
    """Matern 5/2 kernel with one length scale per feature (ARD).

    ``k(x, z) = amplitude * (1 + sqrt(5) r + 5 r^2 / 3) * exp(-sqrt(5) r)`` with
    ``r^2 = sum_j ((x_j - z_j) / length_scale_j)^2`` (Rasmussen and Williams 2006, eq. 4.17);
    equal to scikit-learn's ``ConstantKernel(amplitude) * Matern(length_scale, nu=2.5)``.

    Args:
        x: ``(m, dim)``; z: ``(n, dim)``; length_scale: ``(dim,)``.

    Returns:
        ``(m, n)`` kernel matrix.
    """
    r = _sq_dist(x / length_scale, z / length_scale)  # r^2, then r (in place: less memory)
    poly = r * r.dtype.type(5.0 / 3.0)
    np.sqrt(r, out=r)
    r *= _SQRT5  # sqrt(5) r
    poly += r
    poly += 1.0
    np.negative(r, out=r)
    np.exp(r, out=r)
    poly *= r
    poly *= amplitude
    return poly


def neg_log_prior(theta: np.ndarray) -> tuple[float, np.ndarray]:
    """Weak priors on the hyperparameters (standardized outputs, unit-box inputs), and the
    gradient with respect to ``theta``.

    Length scale ``l``: penalty ``0.1 (l^2 + 1 / l^2)`` (favours ``l`` near 1, keeps every input
    relevant); amplitude ``a``: Gamma(2, 1); noise variance ``s``: Gamma(1.1, 30) (favours a
    small but non-zero noise, which keeps some exploration). These are the priors Optuna's
    GPSampler uses (``optuna/_gp/prior.py``), written here in log-parameter form.
    """
    amp, ls2, noise = np.exp(theta[0]), np.exp(2 * theta[1:-1]), np.exp(theta[-1])
    value = float(0.1 * (ls2 + 1.0 / ls2).sum()) + (amp - theta[0]) + (30.0 * noise - 0.1 * theta[-1])
    grad = np.empty_like(theta)
    grad[0] = amp - 1.0
    grad[1:-1] = 0.2 * (ls2 - 1.0 / ls2)
    grad[-1] = 30.0 * noise - 0.1
    return value, grad


class MaternGP:
    """Exact GP regression with a Matern 5/2 ARD kernel and Gaussian noise, zero prior mean.

    Hyperparameters ``theta`` are natural logs of ``[amplitude, length scales (dim),
    noise variance]``. Fitting maximizes the log marginal likelihood (Rasmussen and Williams
    2006, eq. 5.8, gradient eq. 5.9) with L-BFGS-B within :func:`theta_bounds`.

    The kernel is scikit-learn's ``ConstantKernel * Matern(nu=2.5) + WhiteKernel`` (a test
    checks the matrices agree); it is computed here directly because scikit-learn's generic
    kernel gradient builds ``n x n x dim`` tensors and was 10x slower on the proposal path.

    Attributes:
        theta: the log-hyperparameters in use.
        x: training features ``(n, dim)``; alpha: ``K^-1 y``; chol: lower Cholesky factor of K.
    """

    def __init__(self, theta: np.ndarray):
        self.theta = np.asarray(theta, dtype=float)
        self.x = np.zeros((0, 0))
        self.alpha = np.zeros(0)
        self.chol = np.zeros((0, 0))
        self._chol_inv: np.ndarray | None = None
        self._cache: dict[Any, tuple[np.ndarray, ...]] = {}

    @property
    def amplitude(self) -> float:
        return float(np.exp(self.theta[0]))

    @property
    def length_scale(self) -> np.ndarray:
        return np.exp(self.theta[1:-1])

    @property
    def noise(self) -> float:
        return float(np.exp(self.theta[-1]))

    def condition(self, x: np.ndarray, y: np.ndarray) -> MaternGP:
        """Condition on data with the current hyperparameters (no fitting). Returns self.

        Raises:
            numpy.linalg.LinAlgError: the kernel matrix is not positive definite.
        """
        from scipy import linalg

        k = matern52(x, x, self.amplitude, self.length_scale)
        k[np.diag_indices_from(k)] += self.noise + _JITTER
        self.chol = linalg.cholesky(k, lower=True)
        self.alpha = linalg.cho_solve((self.chol, True), y)
        self.x = x
        self._chol_inv = None
        self._cache = {}
        return self

    def predict(self, xs: np.ndarray, chunk: int = 1000, single: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent function at ``xs`` ``(m, dim)``.

        Args:
            xs: the points, ``(m, dim)``.
            chunk: rows per block (blocks stay in cache).
            single: compute in float32, about twice as fast; the standard deviation then has
                a floor near ``3e-4 * sqrt(amplitude)``. Used to screen many candidates, whose
                best are scored again in float64.

        Returns:
            ``(mean, std)``, each ``(m,)``.
        """
        from scipy import linalg

        if self._chol_inv is None:
            self._chol_inv = linalg.solve_triangular(self.chol, np.eye(len(self.chol)),
                                                     lower=True)
        dtype = np.float32 if single else np.float64
        ls = self.length_scale
        if dtype not in self._cache:
            self._cache[dtype] = ((self.x / ls).astype(dtype), self.alpha.astype(dtype),
                                  np.ascontiguousarray(self._chol_inv.T, dtype=dtype),
                                  np.ones(len(ls), dtype=dtype))
        xt, alpha, linv_t, ones = self._cache[dtype]
        xs = (xs / ls).astype(dtype)
        means, stds = [], []
        for start in range(0, xs.shape[0], chunk):
            ks = matern52(xs[start:start + chunk], xt, self.amplitude, ones)
            means.append(ks @ alpha)
            v = ks @ linv_t
            stds.append(np.sqrt(np.maximum(self.amplitude - (v * v).sum(1), 1e-18)))
        return (np.concatenate(means).astype(np.float64),
                np.concatenate(stds).astype(np.float64))

    @staticmethod
    def neg_log_marginal_likelihood(theta: np.ndarray, x: np.ndarray, y: np.ndarray,
                                    prior: bool = False) -> tuple[float, np.ndarray]:
        """Negative log marginal likelihood and its gradient with respect to ``theta``.

        With ``prior``, the negative log prior of :func:`neg_log_prior` is added (a MAP fit).
        """
        from scipy import linalg

        amp, ls, noise = np.exp(theta[0]), np.exp(theta[1:-1]), np.exp(theta[-1])
        xs = x / ls
        r = np.sqrt(_sq_dist(xs, xs))
        e = np.exp(-_SQRT5 * r)
        kf = amp * (1.0 + _SQRT5 * r + (5.0 / 3.0) * r * r) * e
        k = kf.copy()
        k[np.diag_indices_from(k)] += noise + _JITTER
        try:
            chol = linalg.cholesky(k, lower=True)
        except linalg.LinAlgError:
            return 1e25, np.zeros_like(theta)
        alpha = linalg.cho_solve((chol, True), y)
        nll = 0.5 * float(y @ alpha) + float(np.log(np.diag(chol)).sum()) \
            + 0.5 * len(y) * math.log(2 * math.pi)
        kinv, info = linalg.lapack.dpotri(chol, lower=1)  # K^-1 from the factor: n^3 / 3
        if info != 0:
            return 1e25, np.zeros_like(theta)
        kinv = np.tril(kinv) + np.tril(kinv, -1).T
        w = np.outer(alpha, alpha) - kinv
        grad = np.empty_like(theta)
        grad[0] = 0.5 * float((w * kf).sum())
        g = w * (amp * (5.0 / 3.0) * (1.0 + _SQRT5 * r) * e)
        for j in range(len(ls)):
            diff = xs[:, j][:, None] - xs[:, j][None, :]
            grad[1 + j] = 0.5 * float((g * diff * diff).sum())
        grad[-1] = 0.5 * float(np.trace(w)) * noise
        if prior:
            p, pg = neg_log_prior(theta)
            return nll + p, -grad + pg
        return nll, -grad

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, theta0: np.ndarray | None,
            starts: list[np.ndarray], maxiter: int = 50) -> MaternGP:
        """Fit hyperparameters by L-BFGS-B from ``theta0`` and each of ``starts``; keep the best.

        Args:
            x: features ``(n, dim)``; y: standardized targets ``(n,)``.
            theta0: warm start (None: :func:`default_theta`).
            starts: further starting points (random restarts).
            maxiter: L-BFGS-B iterations per start.

        Raises:
            numpy.linalg.LinAlgError: no hyperparameters give a positive definite matrix.
        """
        from scipy import optimize

        dim = x.shape[1]
        bounds = theta_bounds(dim)
        inits = [default_theta(dim) if theta0 is None else np.asarray(theta0)] + list(starts)

        def run(t0: np.ndarray, xs: np.ndarray, ys: np.ndarray, iters: int
                ) -> tuple[np.ndarray, float]:
            t0 = np.clip(t0, bounds[:, 0], bounds[:, 1])
            res = optimize.minimize(cls.neg_log_marginal_likelihood, t0, args=(xs, ys, True),
                                    jac=True, method="L-BFGS-B", bounds=bounds,
                                    options={"maxiter": iters, "ftol": _FTOL})
            return res.x, float(res.fun)

        if len(inits) > 1 and len(y) > _SCREEN_POINTS:
            # Multi-start on an evenly spaced subset (a short run ranks the starts), then
            # polish the winner on all the data.
            sub = np.linspace(0, len(y) - 1, _SCREEN_POINTS).round().astype(int)
            inits = [min((run(t0, x[sub], y[sub], min(maxiter, _SCREEN_ITERS)) for t0 in inits),
                         key=lambda r: r[1])[0]]
        best = min((run(t0, x, y, maxiter) for t0 in inits), key=lambda r: r[1])
        return cls(best[0]).condition(x, y)


# -- expected improvement --------------------------------------------------------------------
def log_h(z: np.ndarray) -> np.ndarray:
    """``log(z * Phi(z) + phi(z))`` for any real ``z``, without underflow or cancellation.

    For ``z > -1`` the direct form is accurate. Below, with ``Phi(z) = erfcx(-z/sqrt 2)
    exp(-z^2/2) / 2``, ``log h(z) = -z^2/2 - log(2 pi)/2 + log1mexp(log(|z| erfcx(-z/sqrt 2))
    + log(pi/2)/2)``; below ``-1e4`` the asymptotic ``-z^2/2 - log(2 pi)/2 - 2 log|z|``.
    """
    from scipy import special

    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    direct = z > -1.0
    zd = z[direct]
    out[direct] = np.log(zd * special.ndtr(zd) + np.exp(-0.5 * zd * zd - _LOG_2PI_HALF))
    far = z < _Z_ASYMPTOTIC
    zf = z[far]
    out[far] = -0.5 * zf * zf - _LOG_2PI_HALF - 2.0 * np.log(-zf)
    mid = ~direct & ~far
    zm = z[mid]
    a = np.log(-zm * special.erfcx(-zm / math.sqrt(2.0))) + _LOG_PI_2_HALF
    out[mid] = -0.5 * zm * zm - _LOG_2PI_HALF + _log1mexp(a)
    return out


def _log1mexp(a: np.ndarray) -> np.ndarray:
    """``log(1 - exp(a))`` for ``a < 0`` (Maechler 2012)."""
    a = np.minimum(a, -1e-300)
    return np.where(a > -math.log(2.0), np.log(-np.expm1(a)), np.log1p(-np.exp(a)))


def log_expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """log EI of minimization: ``log E[max(best - f, 0)]`` for ``f ~ N(mean, std^2)``.

    Args:
        mean, std: posterior mean and standard deviation, shape ``(m,)``.
        best: the incumbent (lowest observed value).
    """
    std = np.maximum(std, 1e-12)
    return np.log(std) + log_h((best - mean) / std)



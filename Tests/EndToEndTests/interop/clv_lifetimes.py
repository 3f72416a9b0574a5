"""The reference for Rapport's BG/NBD, Gamma-Gamma and CLV: the `lifetimes` package from PyPI.

Reads one JSON object from the file named by its argument, as AnalyticsPredictionTests writes it:
  {"histories": [[x, t_x, T, m], ...],           # days; m = mean repeat-purchase value
   "model": {"r", "alpha", "a", "b", "p", "q", "v"},   # Rapport's fit
   "predictions": [[p_alive, purchases_360d, spend, clv_12m], ...],  # Rapport's, for the first histories
   "discount_rate": 0.01}
and prints one JSON object:
  {"max_relative_error": {...per quantity...},    # Rapport's closed forms against lifetimes' at Rapport's fit
   "lifetimes_fit": {"r", "alpha", "a", "b", "p", "q", "v"},   # lifetimes' own maximum-likelihood fit
   "log_likelihood": {"rapport_bgnbd", "lifetimes_bgnbd", "rapport_gg", "lifetimes_gg"}}  # both scored here
"""
import json
import sys

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter

with open(sys.argv[1]) as file:
    request = json.load(file)
h = np.array(request["histories"], dtype=float)
x, tx, T, m = h[:, 0], h[:, 1], h[:, 2], h[:, 3]
model = request["model"]
ours = np.array(request["predictions"], dtype=float)
rate = request["discount_rate"]

bgf = BetaGeoFitter()
bgf.params_ = pd.Series({k: model[k] for k in ("r", "alpha", "a", "b")})
bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time  # what BetaGeoFitter.fit sets
ggf = GammaGammaFitter()
ggf.params_ = pd.Series({k: model[k] for k in ("p", "q", "v")})

k = len(ours)
xk, txk, Tk, mk = x[:k], tx[:k], T[:k], m[:k]
theirs = np.column_stack([
    np.asarray(bgf.conditional_probability_alive(xk, txk, Tk), dtype=float),
    np.asarray(bgf.conditional_expected_number_of_purchases_up_to_time(360, xk, txk, Tk), dtype=float),
    np.asarray(ggf.conditional_expected_average_profit(pd.Series(xk), pd.Series(mk)), dtype=float),
    np.asarray(ggf.customer_lifetime_value(
        bgf, pd.Series(xk), pd.Series(txk), pd.Series(Tk), pd.Series(mk), time=12, discount_rate=rate, freq="D"),
        dtype=float),
])
relative = np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12)
names = ["probability_alive", "expected_purchases_360d", "expected_spend", "clv_12m"]

# lifetimes' own fit of the same histories, and both fits scored by lifetimes' likelihood.
own = BetaGeoFitter().fit(x, tx, T)
repeat = (x > 0) & (m > 0)
own_gg = GammaGammaFitter().fit(x[repeat], m[repeat])
ones = np.ones_like(x)


def bgnbd_ll(params):
    log_params = np.log([params[k] for k in ("r", "alpha", "a", "b")])
    return -BetaGeoFitter._negative_log_likelihood(log_params, x, tx, T, ones, 0) * len(x)


def gg_ll(params):
    log_params = np.log([params[k] for k in ("p", "q", "v")])
    return -GammaGammaFitter._negative_log_likelihood(log_params, x[repeat], m[repeat], ones[repeat], 0) * repeat.sum()


fitted = {k: float(own.params_[k]) for k in ("r", "alpha", "a", "b")}
fitted.update({k: float(own_gg.params_[k]) for k in ("p", "q", "v")})
print(json.dumps({
    "max_relative_error": {name: float(relative[:, i].max()) for i, name in enumerate(names)},
    "lifetimes_fit": fitted,
    "log_likelihood": {
        "rapport_bgnbd": float(bgnbd_ll(model)), "lifetimes_bgnbd": float(bgnbd_ll(fitted)),
        "rapport_gg": float(gg_ll(model)), "lifetimes_gg": float(gg_ll(fitted)),
    },
}))

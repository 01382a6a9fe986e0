"""Theory diagnostics: random-matrix laws, weight spectra, Jacobians, Hessians, NTKs,
lazy-vs-rich training and random projections (see docs/diagnostics.md).

Heavy pieces (matplotlib, torch.func) are imported where used; importing this package only
imports numpy, scipy-free law functions and torch.
"""

from muscale.diagnostics.hessian import (
    hessian_summary,
    hutchinson_trace,
    hutchinson_variance,
    hvp_operator,
    lanczos,
    power_iteration_deflation,
    slq,
    top_eigenvalues,
)
from muscale.diagnostics.jacobian import (
    critical_point,
    critical_sigma_w,
    input_output_jacobian,
    isometry_study,
    jacobian_spectrum,
    make_mlp,
    theory_jjt_variance,
)
from muscale.diagnostics.jl import distortion, jl_min_dim, projection_matrix, random_projection
from muscale.diagnostics.laws import (
    bbp_outlier,
    bbp_threshold,
    circular_pdf,
    circular_radius_cdf,
    ginibre_matrix,
    mp_cdf,
    mp_edges,
    mp_pdf,
    mp_quantile,
    sample_mp,
    semicircle_cdf,
    semicircle_pdf,
    spiked_covariance_sample,
    tracy_widom_scale,
    wigner_matrix,
)
from muscale.diagnostics.lazy import lazy_vs_rich, train_once, width_exponents
from muscale.diagnostics.monitor import spectral_summary
from muscale.diagnostics.ntk import (
    NTKMLP,
    eigendecay,
    empirical_ntk,
    erf_ntk,
    nngp_ntk,
    ntk_vector_product,
    relu_nngp,
    relu_ntk,
)
from muscale.diagnostics.spectra import (
    LayerSpectrum,
    MPFit,
    PowerLawFit,
    batched_svdvals,
    fit_mp,
    ks_distance,
    mp_outliers,
    powerlaw_fit,
    stable_rank,
    weight_spectra,
)

__all__ = [
    "NTKMLP", "LayerSpectrum", "MPFit", "PowerLawFit", "batched_svdvals", "bbp_outlier",
    "bbp_threshold", "circular_pdf", "circular_radius_cdf", "critical_point",
    "critical_sigma_w", "distortion", "eigendecay", "empirical_ntk", "erf_ntk", "fit_mp",
    "ginibre_matrix", "hessian_summary", "hutchinson_trace", "hutchinson_variance",
    "hvp_operator", "input_output_jacobian", "isometry_study", "jacobian_spectrum",
    "jl_min_dim", "ks_distance", "lanczos", "lazy_vs_rich", "make_mlp", "mp_cdf", "mp_edges",
    "mp_outliers", "mp_pdf", "mp_quantile", "nngp_ntk", "ntk_vector_product",
    "power_iteration_deflation", "powerlaw_fit", "projection_matrix", "random_projection",
    "relu_nngp", "relu_ntk", "sample_mp", "semicircle_cdf", "semicircle_pdf", "slq",
    "spectral_summary", "spiked_covariance_sample", "stable_rank", "theory_jjt_variance",
    "top_eigenvalues", "tracy_widom_scale", "train_once", "weight_spectra", "width_exponents",
    "wigner_matrix",
]

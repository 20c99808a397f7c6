"""Linear algebra: ``jitgrad.linalg`` (det, slogdet, inv, solve, cholesky, qr, svd, svdvals,
eigh, eigvalsh, matrix_norm) and the aliases PyTorch keeps in ``torch`` (det, inverse, ...),
batched over leading dims.

Each decomposition is a primitive of kind ``other`` whose impl is NumPy's (LAPACK underneath)
and whose VJP is written in jitgrad ops, so higher orders need nothing more. A primitive with
several results (qr, svd, eigh) is applied once per result it gives (``part``): its VJPs are
linear in the results' cotangents, so each part's rule is the full rule with the other
cotangents zero. The formulas are PyTorch's (FunctionsManual.cpp) restated:

- inv: gA = -X^T g X^T (X = A^-1); det: gA = g det(A) A^-T; slogdet: gA = g_logabsdet A^-T
- solve AX = B: gB = A^-T g, gA = -gB X^T
- cholesky A = L L^T: P = tril(L^T gL), gA = L^-T (P + P_strict^T) / 2 L^-1 (symmetric)
- qr A = QR (m >= n): M = R gR^T - gQ^T Q, gA = (gQ + Q copyltu(M)) R^-T; for m < n the first
  m columns as for a square matrix (gQ + Y gR_Y^T), the rest Q gR_Y
- svd A = U S Vh: J = (skew(U^T gU) S_j + S_i skew(V^T gV)) / (S_j^2 - S_i^2) + diag(gS), then
  gA = U J Vh plus the parts orthogonal to U (m > n) or V (m < n)
- eigh A = Q diag(L) Q^T: gA = Q ((Q^T gQ - gQ^T Q) / 2 / (L_j - L_i) + diag(gL)) Q^T

The symmetric ones (cholesky, eigh) read one triangle of A, as LAPACK does, and give PyTorch's
symmetric gradient (the gradient for symmetric perturbations of A).
"""

# (imported in this order: the op table lists the entries as they are declared)
# isort: off
from . import inverse, cholesky, qr, svd, eigh, norms  # noqa: F401,E402

# isort: on
from .common import LinAlgError  # noqa: F401,E402

"""``(a @ b).toarray()`` for two CSR matrices whose product is nearly dense, without the sparse
product in between.

Content scores (user profiles x item term vectors) fill most cells of a users x items block:
scipy builds that as a sparse matrix (index arrays, a value per cell) and densifies it, which
cost ~0.4 s per 1,024-user block on the 100k-user shop. The compiled loop adds each product
straight into the dense block, in scipy's order (``a``'s row entries as stored, each one's ``b``
row as stored, one accumulator per cell in the result's type), so every cell gets the same
additions in the same order: the same floats.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

_KERNEL = None


def _kernel():
    """Compiled once per process (cached on disk by Numba); releases the GIL."""
    global _KERNEL
    if _KERNEL is None:
        from numba import njit

        @njit(cache=True, nogil=True)
        def accumulate(a_indptr, a_indices, a_data, b_indptr, b_indices, b_data, out,
                       r0, r1):  # pragma: no cover
            for i in range(r0, r1):
                for jj in range(a_indptr[i], a_indptr[i + 1]):
                    t = a_indices[jj]
                    v = a_data[jj]
                    for kk in range(b_indptr[t], b_indptr[t + 1]):
                        out[i, b_indices[kk]] += v * b_data[kk]

        _KERNEL = accumulate
    return _KERNEL


def dense_product(a: sp.spmatrix, b: sp.spmatrix) -> np.ndarray:
    """The dense ``a @ b`` (C order, the result type of the two). One thread: splitting a
    1,024-user block over two measured no faster, and its callers already run blocks on the
    worker threads."""
    dtype = np.result_type(a.dtype, b.dtype)
    a = sp.csr_matrix(a, dtype=dtype)
    b = sp.csr_matrix(b, dtype=dtype)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"shapes {a.shape} and {b.shape} do not align")
    out = np.zeros((a.shape[0], b.shape[1]), dtype=dtype)
    if a.nnz and b.nnz:
        _kernel()(a.indptr, a.indices, a.data, b.indptr, b.indices, b.data, out, 0, a.shape[0])
    return out

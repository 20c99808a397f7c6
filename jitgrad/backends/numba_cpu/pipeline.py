"""The Numba compiler pipeline for generated drivers: Numba's nopython pipeline without the
passes that only rewrite constructs generated code never contains.

Generated code is loops over flat arrays, scalar arithmetic, calls of the runtime helpers and
BLAS: no closures, ``with`` blocks, ``literally``/``literal_unroll``, array expressions or
branches on constants. Numba's default pipeline still runs a pass for each of those over the
whole function (inlining closures, generic and array-expression rewrites, dead-branch pruning
three times...); on a training step's driver they took about 0.2 s of a cold start. A parallel
driver keeps the default pipeline (its parfor passes need the rest).
"""

from __future__ import annotations

from numba.core.compiler import CompilerBase
from numba.core.compiler_machinery import PassManager
from numba.core.typed_passes import (
    AnnotateTypes,
    InlineOverloads,
    IRLegalization,
    NativeLowering,
    NoPythonBackend,
    NoPythonSupportedFeatureValidation,
    NopythonTypeInference,
    PreLowerStripPhis,
)
from numba.core.untyped_passes import (
    FixupArgs,
    InlineInlinables,
    IRProcessing,
    ReconstructSSA,
    TranslateByteCode,
)

# In order: bytecode to IR, inlining of ``inline="always"`` functions (the random draw) and
# of overloads declared inline, SSA, typing, legalization and lowering.
_PASSES = (
    TranslateByteCode,
    FixupArgs,
    IRProcessing,
    InlineInlinables,
    ReconstructSSA,
    NopythonTypeInference,
    PreLowerStripPhis,
    InlineOverloads,
    NoPythonSupportedFeatureValidation,
    IRLegalization,
    AnnotateTypes,
    NativeLowering,
    NoPythonBackend,
)


class LeanPipeline(CompilerBase):
    """Numba's nopython pipeline, less the rewrites generated code has no use for."""

    def define_pipelines(self):
        pm = PassManager("nopython")  # (the name Numba's timers and metadata expect)
        for cls in _PASSES:
            pm.add_pass(cls, cls.__name__)
        pm.finalize()
        return [pm]

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


class LeanPipeline(CompilerBase):
    """Bytecode to IR, inlining of ``inline="always"`` functions and overloads (the random
    draw, the vectorizable math), SSA, typing, legalization and lowering."""

    def define_pipelines(self):
        pm = PassManager("nopython")  # (the name Numba's timers and metadata expect)
        pm.add_pass(TranslateByteCode, "analyzing bytecode")
        pm.add_pass(FixupArgs, "fix up args")
        pm.add_pass(IRProcessing, "processing IR")
        pm.add_pass(InlineInlinables, "inline inlinable functions")
        pm.add_pass(ReconstructSSA, "ssa")
        pm.add_pass(NopythonTypeInference, "nopython frontend")
        pm.add_pass(PreLowerStripPhis, "remove phis nodes")
        pm.add_pass(InlineOverloads, "inline overloaded functions")
        pm.add_pass(NoPythonSupportedFeatureValidation, "ensure supported features")
        pm.add_pass(IRLegalization, "ensure IR is legal prior to lowering")
        pm.add_pass(AnnotateTypes, "annotate types")
        pm.add_pass(NativeLowering, "native lowering")
        pm.add_pass(NoPythonBackend, "nopython mode backend")
        pm.finalize()
        return [pm]
